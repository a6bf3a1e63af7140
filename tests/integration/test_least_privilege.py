"""What a customer grants, read as a security reviewer would: the AWS policy of each level
(IAM only on clusterflow-* roles, PassRole to EKS/EC2 only, a permissions boundary on every role
clusterflow creates, only the EKS-managed policies, EC2/EKS writes tied to clusterflow's tag;
`read` read-only), the roles a real deploy leaves in the account (moto, read through boto3),
every request a deploy and a delete send with the connected role's credentials (each within the
policy, conditions included), and the README's tables, which must list every grant the code makes.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from clusterflow.activities.providers.aws import AwsClients, AwsCloudConnect, AwsCredentials
from clusterflow.activities.providers.aws.connect import boundary_policy, level_policy
from clusterflow.api.app import create_app
from clusterflow.contracts.cloud_accounts import ReverifyInput
from clusterflow.contracts.cloud_permissions import (
    AWS_BOUNDARY,
    AWS_CLUSTER_TAG,
    AWS_EKS_POLICIES,
    PERMISSIONS,
    aws_boundary_arn,
)
from clusterflow.records import cloud_accounts
from clusterflow.settings import Settings
from clusterflow.worker.main import build_worker
from tests.aws_support import REGION, aws_document, aws_settings, aws_worker, connect, gaps, settings
from tests.conftest import Org, Services
from tests.fakes.aws import EksGaps, MotoAws, new_account_id
from tests.helpers import wait_for_operation
from tests.integration.test_eks_journey import approve_if_asked

__all__ = ["aws_settings", "aws_worker", "gaps", "settings"]

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT, ROLE = "210987654321", "clusterflow-org-1"


def _allowed(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in policy["Statement"] if s["Effect"] == "Allow"]


def _resources(statement: dict[str, Any]) -> list[str]:
    value = statement["Resource"]
    return value if isinstance(value, list) else [value]


def test_manage_confines_iam_to_clusterflow_roles_with_a_boundary() -> None:
    policy = level_policy(ACCOUNT, ROLE, "manage")
    iam = [s for s in _allowed(policy) if any(a.startswith("iam:") for a in s["Action"])]
    for statement in iam:
        for resource in _resources(statement):
            if resource == f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/*":  # EKS's own, by service name
                assert statement["Action"] == ["iam:CreateServiceLinkedRole"]
                assert "iam:AWSServiceName" in statement["Condition"]["StringEquals"]
                continue
            if resource == aws_boundary_arn(ACCOUNT, ROLE):  # reading the boundary, nothing more
                assert statement["Action"] == ["iam:GetPolicy", "iam:GetPolicyVersion"]
                continue
            assert resource in (f"arn:aws:iam::{ACCOUNT}:role/clusterflow-*", f"arn:aws:iam::{ACCOUNT}:role/{ROLE}")
    by_action = {a: s for s in iam for a in s["Action"]}
    assert _resources(by_action["iam:PassRole"]) == [f"arn:aws:iam::{ACCOUNT}:role/clusterflow-*"]
    assert by_action["iam:PassRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": ["eks.amazonaws.com", "ec2.amazonaws.com"]}
    }
    assert by_action["iam:CreateRole"]["Condition"] == {
        "StringEquals": {"iam:PermissionsBoundary": aws_boundary_arn(ACCOUNT, ROLE)}
    }
    assert by_action["iam:AttachRolePolicy"]["Condition"] == {"ArnEquals": {"iam:PolicyARN": list(AWS_EKS_POLICIES)}}
    never = {"iam:PutRolePolicy", "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:PutRolePermissionsBoundary"}
    assert never.isdisjoint(by_action), "no way to write a policy or shed the boundary"
    assert not any("*" in a for a in by_action), "no IAM wildcards"
    denied = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert _resources(denied[0]) == [f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"], "the role may not change itself"


def test_manage_ties_every_ec2_and_eks_write_to_the_clusterflow_tag() -> None:
    for statement in _allowed(level_policy(ACCOUNT, ROLE, "manage")):
        writes = [
            a
            for a in statement["Action"]
            if a.split(":")[0] in ("ec2", "eks") and not a.split(":")[1].startswith(("Describe", "List"))
        ]
        if not writes:
            continue
        conditions = json.dumps(statement.get("Condition", {}))
        assert "clusterflow:cluster-id" in conditions or "ec2:CreateAction" in conditions, statement
        assert all(ACCOUNT in r for r in _resources(statement)), statement


def test_read_is_read_only() -> None:
    for statement in _allowed(level_policy(ACCOUNT, ROLE, "read")):
        for action in statement["Action"]:
            verb = action.split(":")[1]
            assert verb.startswith(("Describe", "List", "Get")), action
    assert {g.actions[0] for g in PERMISSIONS["gcp"]["read"]} == {"roles/container.viewer", "roles/compute.viewer"}
    assert {g.actions[0] for g in PERMISSIONS["azure"]["read"]} == {
        "Reader",
        "Azure Kubernetes Service Cluster User Role",
    }


def test_gcp_and_azure_never_grant_iam_administration() -> None:
    roles = [g.actions[0] for level in PERMISSIONS["gcp"].values() for g in level]
    assert not any("projectIamAdmin" in r or r in ("roles/owner", "roles/editor") for r in roles)
    acting = [
        g for level in PERMISSIONS["gcp"].values() for g in level if g.actions[0] == "roles/iam.serviceAccountUser"
    ]
    assert acting and all(g.resources[0].startswith("service account ") for g in acting)
    azure = [g for level in PERMISSIONS["azure"].values() for g in level]
    assert all(g.resources == ("resource group",) for g in azure)
    assert not any(g.actions[0] in ("Owner", "Contributor", "User Access Administrator") for g in azure)


def test_the_readme_tables_list_every_grant() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Permissions per cloud and level") :]
    section = section[: section.index("\n## ")]
    for cloud, levels in PERMISSIONS.items():
        for level, listed in levels.items():
            table = re.search(rf"#### {cloud.upper()} `{level}`\n(.*?)(?=\n####|\Z)", section, re.S)
            assert table is not None, (cloud, level)
            for grant in listed:
                for action in grant.actions:
                    assert f"`{action}`" in table.group(1), (cloud, level, action)
    boundary = re.search(r"#### AWS permissions boundary\n(.*?)(?=\n####|\Z)", section, re.S)
    assert boundary is not None
    for grant in AWS_BOUNDARY:
        for action in grant.actions:
            assert f"`{action}`" in boundary.group(1), action


async def test_a_deploy_creates_only_bounded_clusterflow_roles_with_eks_policies(
    api: httpx.AsyncClient,
    aws_worker: None,
    org: Org,
    moto_aws: MotoAws,
    pool: asyncpg.Pool,
    gaps: EksGaps,
    settings: Settings,
) -> None:
    account_id = new_account_id()
    await connect(api, org, moto_aws, account_id)
    role_name = cloud_accounts.aws_role_name(org.id)
    iam = moto_aws.client("iam", moto_aws.customer_session(account_id, REGION))
    boundary = aws_boundary_arn(account_id, role_name)
    stored = iam.get_policy_version(PolicyArn=boundary, VersionId="v1")["PolicyVersion"]["Document"]
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert [s["Sid"] for s in stored["Statement"]] == [g.name for g in AWS_BOUNDARY]
    assert stored == boundary_policy(account_id)

    response = await api.post("/v1/clusters", json=aws_document("lp-1", account_id), headers=org.headers())
    assert response.status_code == 202, response.text
    record = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"], timeout=90)
    assert record["status"] == "SUCCEEDED", record

    created = [r for r in iam.list_roles()["Roles"] if r["RoleName"] != role_name]
    assert sorted(r["RoleName"] for r in created) == ["clusterflow-c-lp-1", "clusterflow-n-lp-1"]
    for role in created:
        described = iam.get_role(RoleName=role["RoleName"])["Role"]
        assert described["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary
        attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
        assert {p["PolicyArn"] for p in attached} <= set(AWS_EKS_POLICIES)

    # The customer widens the boundary: re-verification notices, the account is DEGRADED.
    widened = boundary_policy(account_id)
    widened["Statement"].append({"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"})
    iam.create_policy_version(PolicyArn=boundary, PolicyDocument=json.dumps(widened), SetAsDefault=True)
    connector = AwsCloudConnect(
        pool,
        AwsClients(gaps.session_factory(), moto_aws.url, REGION),
        bucket=settings.aws_connect_bucket,
        url_seconds=60,
        credentials_max_seconds=3600,
    )
    await ActivityEnvironment().run(connector.reverify_accounts, ReverifyInput())
    row = await cloud_accounts.find_usable(pool, org.id, "aws", account_id)
    assert row is not None and row.status == "DEGRADED"
    assert row.error is not None and "permissions boundary" in row.error["message"]


@dataclass
class Call:
    action: str
    params: dict[str, Any]


def _allowed_by(policy: dict[str, Any], call: Call) -> list[str]:
    """Sids of the Allow statements whose actions cover the call's."""
    return [
        s["Sid"]
        for s in _allowed(policy)
        if any(fnmatch.fnmatchcase(call.action.lower(), a.lower()) for a in s["Action"])
    ]


async def test_every_call_a_deploy_and_delete_make_is_within_the_manage_policy(
    services: Services, moto_aws: MotoAws, org: Org, pool: asyncpg.Pool, temporal_client: Client, gaps: EksGaps
) -> None:
    """Every AWS request the provider sends with the connected role's credentials, through a
    deploy and a delete, is one the `manage` policy allows: its action is granted, and what the
    grant's condition asks of the request holds (roles named clusterflow-*, the boundary on each
    created role, only EKS policies attached, clusterflow's tag on every EC2/EKS create)."""
    calls: list[Call] = []
    base = gaps.session_factory()

    def recording(credentials: AwsCredentials | None, region: str) -> boto3.Session:
        session = base(credentials, region)
        if credentials is not None:  # the customer's role, not the platform's own calls

            def record(model: Any, params: dict[str, Any], **_: Any) -> None:
                calls.append(Call(f"{model.service_model.signing_name}:{model.name}", dict(params)))

            session.events.register("before-parameter-build.*.*", record)
        return session

    settings = aws_settings(services, moto_aws)
    account_id = new_account_id()
    app = create_app(settings)
    async with (
        build_worker(temporal_client, pool, settings, aws_sessions=recording),
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api,
    ):
        await connect(api, org, moto_aws, account_id)
        deployed = (
            await api.post("/v1/clusters", json=aws_document("lp-2", account_id), headers=org.headers())
        ).json()["data"]
        record = await wait_for_operation(api, org.headers(), deployed["operationId"], timeout=90)
        assert record["status"] == "SUCCEEDED", record
        deleted = (await api.delete(f"/v1/clusters/{deployed['clusterId']}", headers=org.headers())).json()["data"]
        await approve_if_asked(api, org, deleted)
        record = await wait_for_operation(api, org.headers(), deleted["operationId"], timeout=90)
        assert record["status"] == "SUCCEEDED", record

    role_name = cloud_accounts.aws_role_name(org.id)
    policy = level_policy(account_id, role_name, "manage")
    boundary = aws_boundary_arn(account_id, role_name)
    actions = {c.action for c in calls}
    assert {"eks:CreateCluster", "eks:DeleteCluster", "ec2:CreateVpc", "iam:CreateRole", "iam:DeleteRole"} <= actions
    refused = sorted({c.action for c in calls if c.action != "sts:GetCallerIdentity" and not _allowed_by(policy, c)})
    assert refused == [], f"calls the manage policy does not grant: {refused}"
    for call in calls:
        service, name = call.action.split(":")
        if "RoleName" in call.params:
            assert fnmatch.fnmatchcase(call.params["RoleName"], "clusterflow-*"), call
            assert call.params["RoleName"] != role_name or name.startswith(("Get", "List")), call
        if name == "CreateRole":
            assert call.params["PermissionsBoundary"] == boundary, call
        if name in ("AttachRolePolicy", "DetachRolePolicy"):
            assert call.params["PolicyArn"] in AWS_EKS_POLICIES, call
        if service == "ec2" and name.startswith("Create") and name != "CreateRoute":
            tags = {t["Key"] for spec in call.params.get("TagSpecifications", []) for t in spec["Tags"]}
            assert AWS_CLUSTER_TAG in tags, call
        if service == "eks" and name.startswith("Create"):
            assert AWS_CLUSTER_TAG in call.params.get("tags", {}), call
