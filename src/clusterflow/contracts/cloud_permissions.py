"""What a customer grants clusterflow in their cloud, per cloud and access level: one list that
the AWS template, the GCP and Azure setup scripts, the connect answer and the README's tables
are all made from, so what we ask for, what we show and what we document cannot drift apart.

Each `Grant` is one thing a security reviewer signs: what (AWS actions, a GCP role, an Azure
role), on what, under which conditions, and why an operation needs it. AWS resources and
condition values are templates: `{account}` (the customer's account), `{role}` (the role the
template creates) and `{boundary}` (the permissions boundary every role clusterflow creates
must carry) are filled in per account (`render`). Stdlib only: the API shows this list and the
worker builds policies from it.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("read", "manage")

# The tag every resource clusterflow creates in AWS carries (the provider's CLUSTER_TAG).
AWS_CLUSTER_TAG = "clusterflow:cluster-id"
# Roles clusterflow may create, change and pass: its own prefix only.
AWS_ROLE_PATTERN = "arn:aws:iam::{account}:role/clusterflow-*"
# The only managed policies clusterflow may attach to the roles it creates.
AWS_EKS_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)


@dataclass(frozen=True)
class Condition:
    operator: str
    """An IAM condition operator, such as StringEquals or ArnEquals."""
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    name: str
    """AWS: the statement's Sid; GCP and Azure: a short label."""
    actions: tuple[str, ...]
    """AWS IAM actions, or the one GCP role / Azure role definition granted."""
    resources: tuple[str, ...]
    """AWS resource ARNs (templates); GCP and Azure: the scope the role is bound on."""
    why: str
    conditions: tuple[Condition, ...] = ()
    effect: str = "Allow"


def _tagged(kind: str) -> Condition:
    """EC2/EKS writes: only when the request (`RequestTag`) or the resource (`ResourceTag`)
    carries clusterflow's tag."""
    return Condition("StringLike", f"aws:{kind}/{AWS_CLUSTER_TAG}", ("?*",))


_OWN_ROLE = "arn:aws:iam::{account}:role/{role}"
_EC2 = "arn:aws:ec2:*:{account}:*"
_EKS = (
    "arn:aws:eks:*:{account}:cluster/*",
    "arn:aws:eks:*:{account}:nodegroup/*",
    "arn:aws:eks:*:{account}:addon/*",
)
_AWS_READ = (
    Grant(
        "SelfInspection",
        ("iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies"),
        (_OWN_ROLE,),
        "The connect check and the hourly re-verification read this role to prove its trust policy and "
        "permissions are exactly the template's.",
    ),
    Grant(
        "ReadClustersAndNetworks",
        ("ec2:Describe*", "eks:Describe*", "eks:List*"),
        ("*",),
        "Read-only: show clusters, node groups, add-ons, VPCs and subnets, and check a spec against the "
        "account (instance types, zones) before changing anything. Describe/List calls take no resource ARN.",
    ),
    Grant(
        "ReadQuotas",
        ("servicequotas:GetServiceQuota",),
        ("*",),
        "Read-only: refuse a deploy that would exceed the account's VPC quota before creating anything.",
    ),
)
_AWS_MANAGE = (
    *_AWS_READ,
    Grant(
        "BoundaryInspection",
        ("iam:GetPolicy", "iam:GetPolicyVersion"),
        ("{boundary}",),
        "The connect check and re-verification read the permissions boundary to prove it is exactly the "
        "template's before any role is created with it.",
    ),
    Grant(
        "CreateTaggedNetworks",
        ("ec2:CreateVpc", "ec2:CreateSubnet", "ec2:CreateInternetGateway", "ec2:CreateRouteTable"),
        (_EC2,),
        "Deploy: a cluster without a given VPC gets its own VPC, subnets, gateway and route table; only "
        "with clusterflow's tag in the request.",
        (_tagged("RequestTag"),),
    ),
    Grant(
        "TagOnCreate",
        ("ec2:CreateTags",),
        (_EC2,),
        "Deploy: tag network pieces in the call that creates them (and in no other call).",
        (
            Condition(
                "StringEquals",
                "ec2:CreateAction",
                ("CreateVpc", "CreateSubnet", "CreateInternetGateway", "CreateRouteTable"),
            ),
        ),
    ),
    Grant(
        "ChangeOwnNetworks",
        (
            "ec2:ModifyVpcAttribute",
            "ec2:ModifySubnetAttribute",
            "ec2:AttachInternetGateway",
            "ec2:DetachInternetGateway",
            "ec2:CreateRoute",
            "ec2:AssociateRouteTable",
            "ec2:DisassociateRouteTable",
            "ec2:DeleteVpc",
            "ec2:DeleteSubnet",
            "ec2:DeleteInternetGateway",
            "ec2:DeleteRouteTable",
        ),
        (_EC2,),
        "Deploy and delete: wire up and tear down the network clusterflow created; only resources that "
        "carry clusterflow's tag, never a VPC the customer brought.",
        (_tagged("ResourceTag"),),
    ),
    Grant(
        "CreateTaggedClusters",
        ("eks:CreateCluster", "eks:CreateNodegroup", "eks:CreateAddon", "eks:TagResource"),
        _EKS,
        "Deploy: create the EKS cluster, its node groups and add-ons; only with clusterflow's tag in the request.",
        (_tagged("RequestTag"),),
    ),
    Grant(
        "ChangeOwnClusters",
        (
            "eks:UpdateClusterVersion",
            "eks:UpdateClusterConfig",
            "eks:UpdateNodegroupVersion",
            "eks:UpdateNodegroupConfig",
            "eks:UpdateAddon",
            "eks:TagResource",
            "eks:UntagResource",
            "eks:DeleteCluster",
            "eks:DeleteNodegroup",
            "eks:DeleteAddon",
        ),
        _EKS,
        "Update, scale, retag and delete: only clusters, node groups and add-ons that carry clusterflow's tag.",
        (_tagged("ResourceTag"),),
    ),
    Grant(
        "CreateBoundedRoles",
        ("iam:CreateRole",),
        (AWS_ROLE_PATTERN,),
        "Deploy: create the EKS cluster role and node role, named clusterflow-*, and only with the "
        "permissions boundary attached, so no role clusterflow creates can exceed it.",
        (Condition("StringEquals", "iam:PermissionsBoundary", ("{boundary}",)),),
    ),
    Grant(
        "ManageOwnRoles",
        ("iam:GetRole", "iam:TagRole", "iam:ListAttachedRolePolicies", "iam:DeleteRole"),
        (AWS_ROLE_PATTERN,),
        "Deploy and delete: find, tag and remove the clusterflow-* roles clusterflow created.",
    ),
    Grant(
        "AttachEksPolicies",
        ("iam:AttachRolePolicy", "iam:DetachRolePolicy"),
        (AWS_ROLE_PATTERN,),
        "Deploy and delete: attach (and detach) the AWS-managed EKS policies a cluster and node role need; "
        "no other policy.",
        (Condition("ArnEquals", "iam:PolicyARN", AWS_EKS_POLICIES),),
    ),
    Grant(
        "PassRolesToEks",
        ("iam:PassRole",),
        (AWS_ROLE_PATTERN,),
        "Deploy: hand the cluster role to EKS and the node role to EC2 nodes; to no other service.",
        (Condition("StringEquals", "iam:PassedToService", ("eks.amazonaws.com", "ec2.amazonaws.com")),),
    ),
    Grant(
        "EksServiceLinkedRoles",
        ("iam:CreateServiceLinkedRole",),
        ("arn:aws:iam::{account}:role/aws-service-role/*",),
        "First deploy in an account: EKS needs its service-linked roles; only EKS's.",
        (Condition("StringEquals", "iam:AWSServiceName", ("eks.amazonaws.com", "eks-nodegroup.amazonaws.com")),),
    ),
    Grant(
        "DenySelfChange",
        (
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            "iam:DeleteRole",
            "iam:TagRole",
            "iam:UntagRole",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:UpdateAssumeRolePolicy",
            "iam:PutRolePermissionsBoundary",
            "iam:DeleteRolePermissionsBoundary",
        ),
        (_OWN_ROLE,),
        "This role's own name matches clusterflow-*: it may never change itself or its trust.",
        effect="Deny",
    ),
)

# The permissions boundary (a managed policy the `manage` template creates): the most any role
# clusterflow creates can ever do, whatever policies are attached to it. The cluster and node
# roles need what the AWS-managed EKS policies grant; nothing in IAM beyond EKS's own
# service-linked roles, and no way to shed the boundary.
AWS_BOUNDARY = (
    Grant(
        "EksServiceRoleCeiling",
        (
            "autoscaling:*",
            "ec2:*",
            "elasticloadbalancing:*",
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:DescribeImages",
            "ecr:DescribeRepositories",
            "ecr:GetAuthorizationToken",
            "ecr:GetDownloadUrlForLayer",
            "ecr:ListImages",
            "eks:DescribeCluster",
            "eks-auth:AssumeRoleForPodIdentity",
            "kms:DescribeKey",
            "logs:CreateLogGroup",
            "logs:PutRetentionPolicy",
        ),
        ("*",),
        "Ceiling of the EKS cluster role and node role: what AmazonEKSClusterPolicy, AmazonEKSWorkerNodePolicy, "
        "AmazonEKS_CNI_Policy and AmazonEC2ContainerRegistryReadOnly grant, and no IAM, S3 or secrets access.",
    ),
    Grant(
        "KmsGrantsForAws",
        ("kms:CreateGrant",),
        ("arn:aws:kms:*:{account}:key/*",),
        "Encrypted volumes and secrets: EKS and EC2 may be granted use of the account's keys, for AWS resources only.",
        (Condition("Bool", "kms:GrantIsForAWSResource", ("true",)),),
    ),
    Grant(
        "EksServiceLinkedRoles",
        ("iam:CreateServiceLinkedRole",),
        ("arn:aws:iam::{account}:role/aws-service-role/*",),
        "The EKS cluster policy creates EKS's service-linked roles; no other IAM write.",
        (Condition("StringEquals", "iam:AWSServiceName", ("eks.amazonaws.com", "eks-nodegroup.amazonaws.com")),),
    ),
    Grant(
        "DenyBoundaryRemoval",
        ("iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary"),
        ("*",),
        "A bounded role may never remove or replace its boundary.",
        effect="Deny",
    ),
)

GCP_NODE_SERVICE_ACCOUNT = "{project_number}-compute@developer.gserviceaccount.com"
_GCP_READ = (
    Grant(
        "container.viewer",
        ("roles/container.viewer",),
        ("project",),
        "Read-only: show GKE clusters and node pools.",
    ),
    Grant(
        "compute.viewer",
        ("roles/compute.viewer",),
        ("project",),
        "Read-only: check zones, machine types and networks against a spec.",
    ),
)
_GCP_MANAGE = (
    Grant(
        "container.admin",
        ("roles/container.admin",),
        ("project",),
        "Deploy, update, scale and delete GKE clusters and node pools, and issue their kubeconfigs. "
        "Grants no project IAM: it cannot change who has access to the project.",
    ),
    _GCP_READ[1],
    Grant(
        "iam.serviceAccountUser",
        ("roles/iam.serviceAccountUser",),
        ("service account " + GCP_NODE_SERVICE_ACCOUNT,),
        "Deploy: GKE nodes run as the project's Compute Engine default service account; acting as it is "
        "granted on that one service account, not the project.",
    ),
)

_AZURE_READ = (
    Grant(
        "Reader",
        ("Reader",),
        ("resource group",),
        "Read-only: show AKS clusters in the resource group; re-verification reads the subscription.",
    ),
    Grant(
        "AKS Cluster User",
        ("Azure Kubernetes Service Cluster User Role",),
        ("resource group",),
        "Issue a cluster user kubeconfig (Entra ID sign-in) for clusters in the resource group.",
    ),
)
_AZURE_MANAGE = (
    _AZURE_READ[0],
    Grant(
        "AKS Contributor",
        ("Azure Kubernetes Service Contributor Role",),
        ("resource group",),
        "Deploy, update, scale and delete AKS clusters and agent pools in the resource group (no role "
        "assignments, no other resource types).",
    ),
    Grant(
        "Network Contributor",
        ("Network Contributor",),
        ("resource group",),
        "Deploy with `aks.vnetSubnetID`: join the cluster to the customer's subnet in this resource group "
        "(AKS's own network otherwise lives in its node resource group, managed by AKS).",
    ),
)

PERMISSIONS: dict[str, dict[str, tuple[Grant, ...]]] = {
    "aws": {"read": _AWS_READ, "manage": _AWS_MANAGE},
    "gcp": {"read": _GCP_READ, "manage": _GCP_MANAGE},
    "azure": {"read": _AZURE_READ, "manage": _AZURE_MANAGE},
}


def aws_boundary_name(role_name: str) -> str:
    """The permissions boundary the connect template creates beside the role."""
    return f"{role_name}-boundary"


def aws_boundary_arn(account: str, role_name: str) -> str:
    return f"arn:aws:iam::{account}:policy/{aws_boundary_name(role_name)}"


def render(text: str, **values: str) -> str:
    """Fill a template's `{account}`, `{role}`, `{boundary}`, `{project_number}` (others stay)."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def grants(provider: str, level: str, **values: str) -> tuple[Grant, ...]:
    """The level's grants with their templates filled in."""
    return fill(PERMISSIONS[provider][level], **values)


def fill(listed: tuple[Grant, ...], **values: str) -> tuple[Grant, ...]:
    return tuple(
        Grant(
            g.name,
            g.actions,
            tuple(render(r, **values) for r in g.resources),
            g.why,
            tuple(Condition(c.operator, c.key, tuple(render(v, **values) for v in c.values)) for c in g.conditions),
            g.effect,
        )
        for g in listed
    )
