"""Shared by the AWS tests: settings against moto, EKS documents, connecting an account through the
API the way a customer does, and reading EKS, EC2 and IAM as an auditor would."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from clusterflow.settings import Settings
from clusterflow.worker.main import build_worker
from tests.conftest import Org, Services, test_settings
from tests.fakes.aws import EksGaps, MotoAws
from tests.helpers import wait_for_operation

REGION = "us-east-1"


def aws_settings(services: Services, moto: MotoAws, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "enabled_providers": ["local", "aws"],
        "aws_endpoint_url": moto.url,
        "aws_region": REGION,
        "aws_connect_bucket": f"cf-connect-{uuid.uuid4().hex[:8]}",
        "aws_poll_seconds": 0.05,
        "aws_connect_check_initial_seconds": 0.2,
        "aws_connect_check_max_seconds": 0.4,
    }
    values.update(overrides)
    return test_settings(services, **values)


def aws_document(name: str, account_id: str, **eks: Any) -> dict[str, Any]:
    return {
        "apiVersion": "clusterflow.dev/v1",
        "kind": "K8sCluster",
        "spec": {
            "clusterName": name,
            "provider": "aws",
            "region": REGION,
            "provisioner": {
                "type": "eks",
                "eks": {"accountId": account_id, "kubernetesVersion": "1.31", "tags": {"team": "platform"}, **eks},
            },
            "clusterSpec": {
                "dataPlane": {
                    "nodeGroups": [
                        {"name": "workers", "machineTypes": ["m5.large"], "minNode": 1, "maxNode": 3},
                        {
                            "name": "batch",
                            "machineTypes": ["medium"],
                            "minNode": 0,
                            "maxNode": 5,
                            "instanceType": "spot",
                        },
                    ]
                }
            },
        },
    }


def create_stack(moto: MotoAws, account_id: str, template_url: str) -> None:
    """What the customer does: create a CloudFormation stack from the presigned template."""
    template = httpx.get(template_url).text
    cfn = moto.client("cloudformation", moto.customer_session(account_id))
    cfn.create_stack(StackName="clusterflow-connect", TemplateBody=template, Capabilities=["CAPABILITY_NAMED_IAM"])


async def connect(api: httpx.AsyncClient, org: Org, moto: MotoAws, account_id: str) -> dict[str, Any]:
    """Connect `account_id` through the API: request, wait for a check to miss the role, create the
    stack, wait for CONNECTED."""
    body = {"clusterName": "prod", "destinationAccountId": account_id, "level": "manage", "targetRegion": REGION}
    response = await api.post("/v1/cloud-accounts/aws", json=body, headers=org.headers())
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()["data"]
    assert accepted["preSignedTargetCFTemplateURL"], accepted
    # Let at least one check find no role, so the durable wait is exercised.
    for _ in range(200):
        status = (await api.get(f"/v1/cloud-accounts/aws/{accepted['id']}", headers=org.headers())).json()["data"]
        if any(step["message"].startswith("check 1:") for step in status["steps"]):
            break
        await asyncio.sleep(0.05)
    assert status["status"] == "WAITING_FOR_ROLE", status
    create_stack(moto, account_id, accepted["preSignedTargetCFTemplateURL"])
    record = await wait_for_operation(api, org.headers(), accepted["id"], timeout=60)
    assert record["status"] == "SUCCEEDED", record
    return accepted


class EksAuditor:
    """Reads the customer's account through boto3 against moto, never through our records."""

    def __init__(self, moto: MotoAws, account_id: str) -> None:
        session = moto.customer_session(account_id, REGION)
        self.eks = moto.client("eks", session)
        self.ec2 = moto.client("ec2", session)
        self.iam = moto.client("iam", session)

    def cluster(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.eks.describe_cluster(name=name)["cluster"]
        except self.eks.exceptions.ResourceNotFoundException:
            return None
        return found

    def cluster_names(self) -> list[str]:
        return list(self.eks.list_clusters()["clusters"])

    def node_groups(self, cluster: str) -> dict[str, dict[str, Any]]:
        names = self.eks.list_nodegroups(clusterName=cluster)["nodegroups"]
        return {n: self.eks.describe_nodegroup(clusterName=cluster, nodegroupName=n)["nodegroup"] for n in names}

    def tags(self, cluster: str) -> dict[str, str]:
        arn = self.eks.describe_cluster(name=cluster)["cluster"]["arn"]
        return dict(self.eks.list_tags_for_resource(resourceArn=arn)["tags"])

    def user_tags(self, cluster: str) -> dict[str, str]:
        return {k: v for k, v in self.tags(cluster).items() if not k.startswith(("clusterflow:", "aws:"))}

    def network_of(self, cluster_id: str) -> dict[str, list[Any]]:
        """Everything in EC2 tagged as this cluster's."""
        tagged = [{"Name": "tag:clusterflow:cluster-id", "Values": [cluster_id]}]
        return {
            "vpcs": self.ec2.describe_vpcs(Filters=tagged)["Vpcs"],
            "subnets": self.ec2.describe_subnets(Filters=tagged)["Subnets"],
            "gateways": self.ec2.describe_internet_gateways(Filters=tagged)["InternetGateways"],
            "route_tables": self.ec2.describe_route_tables(Filters=tagged)["RouteTables"],
        }

    def roles_of(self, cluster: str) -> set[str]:
        names = {f"clusterflow-c-{cluster}", f"clusterflow-n-{cluster}"}
        return {r["RoleName"] for r in self.iam.list_roles()["Roles"] if r["RoleName"] in names}


# Fixtures for the test modules that run the AWS provider against moto (imported by name there).


@pytest.fixture
def settings(services: Services, moto_aws: MotoAws) -> Settings:
    return aws_settings(services, moto_aws)


@pytest.fixture
def gaps() -> EksGaps:
    return EksGaps()


@pytest.fixture
async def aws_worker(
    temporal_client: Client, pool: asyncpg.Pool, settings: Settings, gaps: EksGaps
) -> AsyncIterator[None]:
    async with build_worker(temporal_client, pool, settings, aws_sessions=gaps.session_factory()):
        yield
