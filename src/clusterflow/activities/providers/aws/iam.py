"""The IAM roles an EKS cluster needs (cluster role, node role), created and deleted idempotently.

A mixin of the provider (`steps.py`): the control plane and the node groups each ensure their
role, and teardown deletes them once nothing uses them. The connected role may only create roles
named `clusterflow-*` that carry the permissions boundary its template created, and attach only
the EKS-managed policies (`contracts/cloud_permissions.py`), so the names and the boundary here
are what that policy allows.
"""

from __future__ import annotations

import json

from clusterflow.activities.providers.aws.clients import Account
from clusterflow.activities.providers.aws.steps import AwsSteps
from clusterflow.activities.providers.phases import PhaseReporter
from clusterflow.contracts.cloud_permissions import AWS_EKS_POLICIES, aws_boundary_arn
from clusterflow.contracts.phase_activity import PhaseInput

CLUSTER_ROLE_POLICIES = AWS_EKS_POLICIES[:1]
NODE_ROLE_POLICIES = AWS_EKS_POLICIES[1:]


def role_names(cluster_name: str) -> tuple[str, str]:
    """`clusterflow-c-<name>` and `clusterflow-n-<name>`: within IAM's 64 characters for any
    cluster name (50 at most), and inside the connected role's `role/clusterflow-*`."""
    return f"clusterflow-c-{cluster_name}", f"clusterflow-n-{cluster_name}"


def boundary_of(account: Account) -> str:
    """The permissions boundary the connect template created beside the connected role."""
    return aws_boundary_arn(account.account_id, account.role_arn.rsplit("/", 1)[-1])


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


class IamSteps(AwsSteps):
    async def _ensure_role(
        self,
        inp: PhaseInput,
        reporter: PhaseReporter,
        account: Account,
        name: str,
        service: str,
        policies: tuple[str, ...],
    ) -> str:
        iam = account.client("iam")
        found = await account.call(iam, "get_role", RoleName=name, missing=("NoSuchEntity",))
        if found is None:
            created = await account.call(
                iam,
                "create_role",
                RoleName=name,
                AssumeRolePolicyDocument=_trust(service),
                PermissionsBoundary=boundary_of(account),
                Description=f"clusterflow: {service} role of cluster {inp.cluster_name}",
                Tags=[{"Key": k, "Value": v} for k, v in self._tags(inp).items()],
                missing=("EntityAlreadyExists",),
            )
            found = created or await account.call(iam, "get_role", RoleName=name)
            await reporter.event(f"role/{name}", f"created IAM role {name}")
        attached = await account.call(iam, "list_attached_role_policies", RoleName=name)
        have = {p["PolicyArn"] for p in attached["AttachedPolicies"]}
        for policy in policies:
            if policy not in have:
                await account.call(iam, "attach_role_policy", RoleName=name, PolicyArn=policy)
        return str(found["Role"]["Arn"])

    async def _delete_role(self, account: Account, name: str) -> None:
        iam = account.client("iam")
        attached = await account.call(iam, "list_attached_role_policies", RoleName=name, missing=("NoSuchEntity",))
        if attached is None:
            return
        for policy in attached["AttachedPolicies"]:
            await account.call(
                iam, "detach_role_policy", RoleName=name, PolicyArn=policy["PolicyArn"], missing=("NoSuchEntity",)
            )
        await account.call(iam, "delete_role", RoleName=name, missing=("NoSuchEntity",))
