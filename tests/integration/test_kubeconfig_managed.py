"""Kubeconfigs of managed clusters end to end: API in-process, real worker, moto (EKS), the fake
GKE and the fake ARM/Entra ID.

Each test connects an account and deploys through the API, as a user does, then asks for a
kubeconfig: it must answer 200 at once with the cluster's server and CA and a credential the
cloud's fake accepts for that cluster, and the credential must reach nobody else: not the
workflow histories (decoded), the database, nor the logs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from temporalio.client import Client

from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from clusterflow.worker.main import build_worker
from tests.cloud import cloud_document
from tests.conftest import Org, Services, test_settings
from tests.fakes import arm as fake_arm
from tests.fakes import gke as fake_gke
from tests.fakes.arm import FakeArm
from tests.fakes.aws import EksGaps, MotoAws, new_account_id
from tests.fakes.gke import FakeGke
from tests.helpers import deploy_document, history_text, wait_for_operation
from tests.integration.test_aws import aws_document, create_stack
from tests.integration.test_federated_connect import ISSUER, connect_azure, connect_gcp, signing_key

__all__ = ["signing_key"]  # a module-scoped fixture, shared
pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def gke() -> Iterator[FakeGke]:
    fake = FakeGke().start()
    yield fake
    fake.stop()


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    fake = FakeArm(tmp_path).start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(services: Services, moto_aws: MotoAws, gke: FakeGke, arm: FakeArm, signing_key: str) -> Settings:
    return test_settings(
        services,
        enabled_providers=["local", "aws", "gcp", "azure"],
        public_url=ISSUER,
        platform_oidc_signing_key=signing_key,
        aws_endpoint_url=moto_aws.url,
        aws_region="us-east-1",
        aws_connect_bucket=f"cf-connect-{uuid.uuid4().hex[:8]}",
        aws_poll_seconds=0.05,
        aws_connect_check_initial_seconds=0.2,
        aws_connect_check_max_seconds=0.4,
        gcp_endpoint=gke.url,
        gcp_poll_seconds=0.05,
        gcp_sts_endpoint=f"{gke.url}/v1/token",
        gcp_iam_credentials_endpoint=gke.url,
        gcp_access_token=gke.token,  # the platform's own credentials, for clusters of no connected account
        azure_arm_endpoint=arm.url,
        azure_authority_host=arm.url,
        azure_ca_bundle=arm.ca_path,
        azure_poll_seconds=0.1,
        cloud_connect_poll_seconds=0.2,
    )


@pytest.fixture
async def worker(temporal_client: Client, pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[None]:
    async with build_worker(temporal_client, pool, settings, aws_sessions=EksGaps().session_factory()):
        yield


async def connect_aws(api: httpx.AsyncClient, org: Org, moto: MotoAws, account_id: str) -> None:
    body = {"clusterName": "prod", "destinationAccountId": account_id, "level": "manage", "targetRegion": "us-east-1"}
    response = await api.post("/v1/cloud-accounts/aws", json=body, headers=org.headers())
    assert response.status_code == 202, response.text
    account_id_ = response.json()["data"]["id"]
    url = response.json()["data"]["preSignedTargetCFTemplateURL"]
    for _ in range(600):  # a cold worker may take longer than the POST waits
        if url:
            break
        await asyncio.sleep(0.1)
        url = (await api.get(f"/v1/cloud-accounts/aws/{account_id_}", headers=org.headers())).json()["data"][
            "preSignedTargetCFTemplateURL"
        ]
    assert url
    create_stack(moto, account_id, url)
    record = await wait_for_operation(api, org.headers(), account_id_, timeout=60)
    assert record["status"] == "SUCCEEDED", record


async def deploy(api: httpx.AsyncClient, org: Org, document: dict[str, Any]) -> str:
    response = await api.post("/v1/clusters", json=document, headers=org.headers())
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"], timeout=90)
    assert record["status"] == "SUCCEEDED", record
    return str(accepted["clusterId"])


async def kubeconfig(
    api: httpx.AsyncClient, org: Org, cluster_id: str, name: str, duration: str = "30m"
) -> tuple[dict[str, Any], dict[str, Any]]:
    response = await api.post(
        f"/v1/clusters/{cluster_id}/kubeconfig", json={"clusterName": name, "duration": duration}, headers=org.headers()
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    data = response.json()["data"]
    assert data["status"] == "READY"
    assert data["operationId"] is None
    assert data["clusterId"] == cluster_id
    config = yaml.safe_load(data["kubeconfig"])
    assert config["current-context"] == name
    return data, config


def minutes_left(expires_at: str) -> float:
    return (datetime.fromisoformat(expires_at.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds() / 60


async def assert_nowhere_but_the_answer(
    api: httpx.AsyncClient,
    secrets: list[str],
    temporal_client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    org: Org,
    logs: str,
) -> None:
    query = f"TaskQueue = '{settings.task_queue}' AND WorkflowType = 'IssueManagedKubeconfig'"
    for _ in range(200):  # visibility trails the executions a little
        issued = [w.id async for w in temporal_client.list_workflows(query)]
        if issued:
            break
        await asyncio.sleep(0.05)
    assert issued, "kubeconfigs are built by the IssueManagedKubeconfig workflow on a worker"
    histories = "".join(
        [
            history_text(await temporal_client.get_workflow_handle(w.id).fetch_history())
            async for w in temporal_client.list_workflows(f"TaskQueue = '{settings.task_queue}'")
        ]
    )
    assert "issue_kubeconfig" in histories
    stored = await pool.fetch(
        """SELECT o.workflow_input::text || coalesce(o.result::text, '') || coalesce(o.metadata::text, '')
                  || coalesce(string_agg(e.message || coalesce(e.raw_output, '') || e.labels::text, ''), '') AS text
             FROM operations o LEFT JOIN operation_events e ON e.operation_id = o.id
            WHERE o.organization_id = $1 GROUP BY o.id""",
        org.id,
    )
    assert (await api.get("/v1/audit/events", headers=org.headers())).status_code == 200  # queued events written
    audit = await pool.fetch("SELECT details::text AS text FROM audit_events WHERE organization_id = $1", org.id)
    kept = await pool.fetchval("SELECT count(*) FROM kubeconfigs WHERE organization_id = $1", org.id)
    assert kept == 0, "a managed cluster's kubeconfig is never stored"
    haystacks = {
        "workflow histories": histories,
        "operations": "".join(r["text"] for r in stored),
        "audit": "".join(r["text"] for r in audit),
        "logs": logs,
    }
    for secret in secrets:
        for name, text in haystacks.items():
            assert secret not in text, f"a kubeconfig credential found in {name}"


async def test_an_eks_cluster_answers_a_kubeconfig_at_once_that_eks_would_accept(
    api: httpx.AsyncClient,
    org: Org,
    moto_aws: MotoAws,
    pool: asyncpg.Pool,
    temporal_client: Client,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="httpx")
    account_id = new_account_id()
    await connect_aws(api, org, moto_aws, account_id)
    cluster_id = await deploy(api, org, aws_document("eks-kc", account_id))

    data, config = await kubeconfig(api, org, cluster_id, "eks-kc")
    described = moto_aws.client("eks", moto_aws.customer_session(account_id)).describe_cluster(name="eks-kc")["cluster"]
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == described["endpoint"]
    assert cluster["certificate-authority-data"] == described["certificateAuthority"]["data"]
    token = config["users"][0]["user"]["token"]
    assert token.startswith("k8s-aws-v1.")
    # What the EKS authenticator does with the token: replay the presigned GetCallerIdentity.
    url = base64.urlsafe_b64decode(token.removeprefix("k8s-aws-v1.") + "==").decode()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["Action"] == ["GetCallerIdentity"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0], "the signature binds the cluster name"
    assert int(query["X-Amz-Expires"][0]) <= 900
    logs_before_replay = caplog.text
    # moto's server routes a request by its Authorization header, which a presigned URL carries in
    # its query: the same signature is repeated as a header so the request reaches moto's STS.
    signed = {k: v[0] for k, v in query.items()}
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={signed['X-Amz-Credential']}, "
        f"SignedHeaders={signed['X-Amz-SignedHeaders']}, Signature={signed['X-Amz-Signature']}"
    )
    identity = httpx.get(url, headers={"x-k8s-aws-id": "eks-kc", "Authorization": authorization})
    assert identity.status_code == 200, identity.text
    assert f"arn:aws:sts::{account_id}:assumed-role/" in identity.text, "the connected account's role"
    assert 0 < minutes_left(data["expiresAt"]) <= 15, "EKS accepts its tokens for 15 minutes at most"

    assert (await api.get(f"/v1/clusters/{cluster_id}/kubeconfig", headers=org.headers())).status_code == 404
    # The presigned URL is the credential; the test's own replay (below) is the only thing logging it.
    await assert_nowhere_but_the_answer(
        api, [token, url, signed["X-Amz-Signature"]], temporal_client, pool, settings, org, logs_before_replay
    )


async def test_gke_and_aks_clusters_answer_kubeconfigs_for_the_connected_account(
    api: httpx.AsyncClient,
    org: Org,
    gke: FakeGke,
    arm: FakeArm,
    pool: asyncpg.Pool,
    temporal_client: Client,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="httpx")
    account = await connect_gcp(api, org, gke, "gke-kc", "acme-kc-1")
    gke_id = await deploy(
        api,
        org,
        cloud_document(
            "gke-kc",
            "gcp",
            "us-central1",
            {"type": "gke", "gke": {"kubernetesVersion": "1.32"}},
            [{"name": "workers", "machineTypes": ["e2-standard-4"], "minNode": 1, "maxNode": 2}],
        ),
    )
    subscription = str(uuid.uuid4())
    await connect_azure(api, org, arm, "aks-kc", subscription, "rg-kc")
    aks_id = await deploy(
        api,
        org,
        cloud_document(
            "aks-kc",
            "azure",
            "eastus",
            {"type": "aks", "aks": {"kubernetesVersion": "1.32"}},
            [{"name": "workers", "machineTypes": ["Standard_D4s_v5"], "minNode": 1, "maxNode": 2}],
        ),
    )

    data, config = await kubeconfig(api, org, gke_id, "gke-kc", duration="20m")
    live = gke.cluster("acme-kc-1", "us-central1", "gke-kc")
    assert live is not None
    assert config["clusters"][0]["cluster"] == {
        "server": f"https://{live['endpoint']}",
        "certificate-authority-data": fake_gke.FAKE_CA_DATA,
    }
    gke_token = config["users"][0]["user"]["token"]
    assert gke.service_account_tokens[gke_token] == account["serviceAccountEmail"], "a token GKE accepts"
    assert data["expiresAt"]

    # clusterflow creates AKS clusters with Entra ID and no local accounts: a kubeconfig at once.
    data, config = await kubeconfig(api, org, aks_id, "aks-kc")
    live = arm.cluster(subscription, "rg-kc", "aks-kc")
    assert live is not None
    assert live["properties"]["aadProfile"] == {"managed": True, "enableAzureRBAC": True}
    assert live["properties"]["disableLocalAccounts"] is True
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://{live['properties']['fqdn']}:443"
    assert cluster["certificate-authority-data"] == fake_arm.FAKE_CA_DATA
    user = config["users"][0]["user"]
    assert "exec" not in user, "no kubelogin device-code login: a token instead"
    aks_token = user["token"]
    assert aks_token in arm.aks_tokens, "an Entra ID token for the AKS API server application"
    assert aks_token not in arm.tokens, "and not one ARM accepts"
    assert data["expiresAt"]

    await assert_nowhere_but_the_answer(api, [gke_token, aks_token], temporal_client, pool, settings, org, caplog.text)


async def test_kubeconfigs_of_managed_clusters_are_scoped_need_an_editor_and_skip_the_simulator(
    api: httpx.AsyncClient, org: Org, gke: FakeGke, pool: asyncpg.Pool
) -> None:
    await connect_gcp(api, org, gke, "gke-scope", "acme-scope-1")
    gke_id = await deploy(
        api,
        org,
        cloud_document(
            "gke-scope",
            "gcp",
            "us-central1",
            {"type": "gke", "gke": {"kubernetesVersion": "1.32"}},
            [{"name": "workers", "machineTypes": ["e2-standard-4"], "minNode": 1, "maxNode": 2}],
        ),
    )
    body = {"clusterName": "gke-scope", "duration": "1h"}
    other_org = await create_organization(pool, f"other-{uuid.uuid4().hex[:8]}")
    _, other_owner = await create_api_key(pool, other_org, "other owner", "owner")
    foreign = await api.post(f"/v1/clusters/{gke_id}/kubeconfig", json=body, headers=org.headers(other_owner))
    assert foreign.status_code == 404
    _, viewer = await create_api_key(pool, org.id, "viewer", "viewer")
    refused = await api.post(f"/v1/clusters/{gke_id}/kubeconfig", json=body, headers=org.headers(viewer))
    assert refused.status_code == 403
    _, editor = await create_api_key(pool, org.id, "editor", "editor")
    issued = await api.post(f"/v1/clusters/{gke_id}/kubeconfig", json=body, headers=org.headers(editor))
    assert issued.status_code == 200, issued.text

    # Deployed with the platform's credentials (no connected account): those are never handed out.
    platform_id = await deploy(
        api,
        org,
        cloud_document(
            "gke-platform",
            "gcp",
            "us-central1",
            {"type": "gke", "gke": {"kubernetesVersion": "1.32", "projectId": "platform-1"}},
            [{"name": "workers", "machineTypes": ["e2-standard-4"], "minNode": 1, "maxNode": 2}],
        ),
    )
    unconnected = await api.post(
        f"/v1/clusters/{platform_id}/kubeconfig",
        json={"clusterName": "gke-platform", "duration": "1h"},
        headers=org.headers(),
    )
    assert unconnected.status_code == 409, unconnected.text
    assert unconnected.json()["error"]["code"] == "CLOUD_ACCOUNT_NOT_CONNECTED"
    assert "POST /v1/cloud-accounts/gcp" in unconnected.json()["message"]

    local_id = await deploy(api, org, deploy_document("local-kc"))
    local = await api.post(
        f"/v1/clusters/{local_id}/kubeconfig", json={"clusterName": "local-kc", "duration": "1h"}, headers=org.headers()
    )
    assert local.status_code == 409
    assert local.json()["error"]["code"] == "KUBECONFIG_NOT_AVAILABLE"
