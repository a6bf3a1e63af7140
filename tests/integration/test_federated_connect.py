"""GCP and Azure cloud connect end to end: API in-process, real worker, real google-auth and
azure-identity federation flows against the fakes (STS + IAM Credentials; Entra ID).

"Running the setup script" is done the way the customer's cloud would see it: the values the
fakes are told to trust are read out of the generated script itself. Credential vending runs
through the worker (`IssueCloudCredentials`); the tests read the workflow histories, the
database and the logs to prove the tokens went nowhere but to the caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.client import Client

from clusterflow.api.app import create_app
from clusterflow.devstack.postgres import free_port
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from tests.cloud import cloud_document
from tests.conftest import Org, Services, test_settings
from tests.fakes.arm import FakeArm
from tests.fakes.gke import FakeGke
from tests.helpers import history_text, wait_for_operation
from tests.processes import settings_env, spawn, stop, wait_http

pytestmark = pytest.mark.usefixtures("worker")

ISSUER = "https://clusterflow.test"


@pytest.fixture(scope="module")
def signing_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


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
def settings(
    request: pytest.FixtureRequest, services: Services, gke: FakeGke, arm: FakeArm, signing_key: str
) -> Settings:
    return test_settings(
        services,
        enabled_providers=["local", "gcp", "azure"],
        public_url=ISSUER,
        platform_oidc_signing_key=signing_key,
        gcp_endpoint=gke.url,
        gcp_poll_seconds=0.05,
        gcp_sts_endpoint=f"{gke.url}/v1/token",
        gcp_iam_credentials_endpoint=gke.url,
        azure_arm_endpoint=arm.url,
        azure_authority_host=arm.url,
        azure_ca_bundle=arm.ca_path,
        azure_poll_seconds=0.1,
        cloud_connect_poll_seconds=0.2,
        cloud_connect_timeout_seconds=1.5 if "times_out" in request.node.name else 60,
    )


def assert_valid_bash(script: str) -> None:
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def one(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in script"
    return match.group(1)


async def test_gcp_connect_ends_connected_once_the_script_has_run(
    api: httpx.AsyncClient, org: Org, gke: FakeGke
) -> None:
    body = {
        "clusterName": "prod-gke",
        "targetProjectId": "acme-prod-1",
        "targetProjectNumber": "123456789012",
        "targetRegion": "us-central1",
        "level": "manage",
    }
    response = await api.post("/v1/cloud-accounts/gcp", json=body, headers=org.headers())
    assert response.status_code == 202, response.text
    account = response.json()["data"]
    assert account["status"] == "PENDING"
    assert account["id"] == account["operationId"]
    assert response.headers["Location"] == f"/v1/operations/{account['id']}"
    script = account["cloudShellScript"]
    assert "roles/container.admin" in script
    shown = {p["actions"][0]: p["resources"] for p in account["permissions"]}
    assert shown == {
        "roles/container.admin": ["projects/acme-prod-1"],
        "roles/compute.viewer": ["projects/acme-prod-1"],
        "roles/iam.serviceAccountUser": ["service account 123456789012-compute@developer.gserviceaccount.com"],
    }
    assert f"--issuer-uri={ISSUER}" in script
    assert account["cloudShellScriptURL"] == f"{ISSUER}/v1/cloud-accounts/gcp/{account['id']}/script"
    served = await api.get(f"/v1/cloud-accounts/gcp/{account['id']}/script", headers=org.headers())
    assert served.text == script
    assert_valid_bash(script)

    await wait_for_operation(api, org.headers(), account["id"], until={"RUNNING"})
    waiting = (await api.get(f"/v1/cloud-accounts/gcp/{account['id']}", headers=org.headers())).json()["data"]
    assert waiting["status"] in ("PENDING", "WAITING_FOR_SETUP")

    # The customer runs the script in Cloud Shell.
    pool_id, provider_id = one(r"POOL_ID=(\S+)", script), one(r"PROVIDER_ID=(\S+)", script)
    audience = (
        f"//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/{pool_id}"
        f"/providers/{provider_id}"
    )
    gke.trust(
        audience,
        one(r"--issuer-uri=(\S+)", script),
        one(r'assertion.sub == "([^"]+)"', script),
        one(r"SA_EMAIL=(\S+)", script),
    )

    record = await wait_for_operation(api, org.headers(), account["id"])
    assert record["status"] == "SUCCEEDED", record
    assert record["operationType"] == "CLOUD_CONNECT"
    connected = (await api.get(f"/v1/cloud-accounts/gcp/{account['id']}", headers=org.headers())).json()["data"]
    assert connected["status"] == "CONNECTED"
    assert connected["connectedAt"]
    assert connected["serviceAccountEmail"] == one(r"SA_EMAIL=(\S+)", script)

    issued = await api.post("/v1/cloud-credentials/gcp", json={"clusterName": "prod-gke"}, headers=org.headers())
    assert issued.status_code == 200, issued.text
    assert issued.headers["Cache-Control"] == "no-store"
    credentials = issued.json()["data"]
    assert credentials["accessToken"].startswith("sa-")
    assert credentials["projectId"] == "acme-prod-1"
    assert credentials["serviceAccountEmail"] == connected["serviceAccountEmail"]
    assert credentials["expiration"].endswith("Z")
    other_project = await api.post(
        "/v1/cloud-credentials/gcp",
        json={"clusterName": "prod-gke", "targetProjectId": "acme-other-1"},
        headers=org.headers(),
    )
    assert other_project.status_code == 404
    assert other_project.json()["error"]["code"] == "CLOUD_ACCOUNT_NOT_CONNECTED"

    again = await api.post("/v1/cloud-accounts/gcp", json=body, headers=org.headers())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "CLOUD_ACCOUNT_CONNECTED"
    forced = await api.post("/v1/cloud-accounts/gcp", json={**body, "forceUpdate": True}, headers=org.headers())
    assert forced.status_code == 202

    # The customer removes the trust: vending fails clearly instead of returning a dead token.
    gke.trusted.clear()
    revoked = await api.post("/v1/cloud-credentials/gcp", json={"clusterName": "prod-gke"}, headers=org.headers())
    assert revoked.status_code == 502
    assert revoked.json()["error"]["code"] == "CLOUD_CREDENTIALS_FAILED"


async def test_gcp_connect_that_is_never_set_up_times_out(api: httpx.AsyncClient, org: Org) -> None:
    body = {"clusterName": "never", "targetProjectId": "acme-never-1", "targetProjectNumber": "998877665544"}
    account = (await api.post("/v1/cloud-accounts/gcp", json=body, headers=org.headers())).json()["data"]
    record = await wait_for_operation(api, org.headers(), account["id"])
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "CONNECT_TIMED_OUT"
    failed = (await api.get(f"/v1/cloud-accounts/gcp/{account['id']}", headers=org.headers())).json()["data"]
    assert failed["status"] == "FAILED"
    assert "did not complete" in failed["error"]["message"]


async def test_cloud_connect_requests_are_validated(api: httpx.AsyncClient, org: Org) -> None:
    bad = await api.post(
        "/v1/cloud-accounts/gcp",
        json={"clusterName": "x1", "targetProjectId": "Bad_Project", "targetProjectNumber": "12"},
        headers=org.headers(),
    )
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["error"]["details"]}
    assert {"targetProjectId", "targetProjectNumber"} <= fields
    region = await api.post(
        "/v1/cloud-accounts/azure",
        json={
            "clusterName": "x1",
            "subscriptionId": str(uuid.uuid4()),
            "resourceGroup": "rg",
            "targetRegion": "us-central1",
        },
        headers=org.headers(),
    )
    assert region.status_code == 422
    assert (await api.get("/v1/cloud-accounts/gcp/op_unknown", headers=org.headers())).status_code == 404


async def test_cloud_accounts_are_scoped_to_their_organization(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    body = {"clusterName": "scoped", "targetProjectId": "acme-scope-1", "targetProjectNumber": "123123123123"}
    account = (await api.post("/v1/cloud-accounts/gcp", json=body, headers=org.headers())).json()["data"]
    other_org = await create_organization(pool, f"other-{uuid.uuid4().hex[:8]}")
    _, other_key = await create_api_key(pool, other_org, "other owner", "owner")
    other = {"Authorization": f"Bearer {other_key}"}
    assert (await api.get(f"/v1/cloud-accounts/gcp/{account['id']}", headers=other)).status_code == 404
    assert (await api.get(f"/v1/cloud-accounts/gcp/{account['id']}/script", headers=other)).status_code == 404
    assert (await api.get(f"/v1/cloud-accounts/azure/{account['id']}", headers=org.headers())).status_code == 404
    _, viewer_key = await create_api_key(pool, org.id, "viewer", "viewer")
    denied = await api.post("/v1/cloud-accounts/gcp", json=body, headers={"Authorization": f"Bearer {viewer_key}"})
    assert denied.status_code == 403


async def test_azure_connect_ends_connected_after_the_script_reports_back(
    api: httpx.AsyncClient, org: Org, arm: FakeArm
) -> None:
    subscription = str(uuid.uuid4())
    body = {
        "clusterName": "prod-aks",
        "subscriptionId": subscription,
        "resourceGroup": "rg-prod",
        "targetRegion": "eastus",
    }
    response = await api.post("/v1/cloud-accounts/azure", json=body, headers=org.headers())
    assert response.status_code == 202, response.text
    account = response.json()["data"]
    script = account["setupScript"]
    assert "Azure Kubernetes Service Contributor Role" in script
    scope = f"/subscriptions/{subscription}/resourceGroups/rg-prod"
    assert {p["actions"][0]: p["resources"] for p in account["permissions"]} == {
        "Reader": [scope],
        "Azure Kubernetes Service Contributor Role": [scope],
        "Network Contributor": [scope],
    }
    assert "__CLUSTERFLOW_CALLBACK_TOKEN__" not in script
    assert account["setupScriptURL"].endswith(f"/v1/cloud-accounts/azure/{account['id']}/script")
    assert_valid_bash(script)

    # The customer runs the script: an app with a federated credential, then the callback.
    credential = json.loads(one(r"federated-credential create --id \"\$\{APP_ID\}\" --parameters '([^']+)'", script))
    assert credential["audiences"] == ["api://AzureADTokenExchange"]
    client_id = str(uuid.uuid4())
    arm.federated[client_id] = (credential["issuer"], credential["subject"])
    callback_url = one(r"curl -fsS -X POST (\S+)", script).removeprefix(ISSUER)
    token = one(r'\\"token\\": \\"([0-9a-f]+)\\"', script)

    forged = await api.post(callback_url, json={"token": "0" * 64, "tenantId": arm.tenant_id, "clientId": client_id})
    assert forged.status_code == 403
    reported = await api.post(callback_url, json={"token": token, "tenantId": arm.tenant_id, "clientId": client_id})
    assert reported.status_code == 200, reported.text

    record = await wait_for_operation(api, org.headers(), account["id"])
    assert record["status"] == "SUCCEEDED", record
    connected = (await api.get(f"/v1/cloud-accounts/azure/{account['id']}", headers=org.headers())).json()["data"]
    assert connected["status"] == "CONNECTED"
    assert (connected["tenantId"], connected["clientId"]) == (arm.tenant_id, client_id)
    late = await api.post(callback_url, json={"token": token, "tenantId": arm.tenant_id, "clientId": client_id})
    assert late.status_code == 409

    issued = await api.post("/v1/cloud-credentials/azure", json={"clusterName": "prod-aks"}, headers=org.headers())
    assert issued.status_code == 200, issued.text
    credentials = issued.json()["data"]
    assert credentials["accessToken"] in arm.tokens, "a token ARM accepts"
    assert (credentials["tenantId"], credentials["clientId"]) == (arm.tenant_id, client_id)
    assert (credentials["subscriptionId"], credentials["resourceGroup"]) == (subscription, "rg-prod")
    assert credentials["aksApiAudience"]
    assert issued.headers["Cache-Control"] == "no-store"
    missing = await api.post("/v1/cloud-credentials/azure", json={"clusterName": "nope"}, headers=org.headers())
    assert missing.status_code == 404
    other_group = await api.post(
        "/v1/cloud-credentials/azure", json={"clusterName": "prod-aks", "resourceGroup": "rg-x"}, headers=org.headers()
    )
    assert other_group.status_code == 404

    # The customer deletes the federated credential: Entra ID refuses, and so do we, clearly.
    arm.federated.clear()
    revoked = await api.post("/v1/cloud-credentials/azure", json={"clusterName": "prod-aks"}, headers=org.headers())
    assert revoked.status_code == 502
    assert revoked.json()["error"]["code"] == "CLOUD_CREDENTIALS_FAILED"
    assert "connect again" in revoked.json()["message"]


async def test_platform_oidc_discovery_is_public(api: httpx.AsyncClient) -> None:
    discovery = (await api.get("/.well-known/openid-configuration")).json()
    assert discovery["issuer"] == ISSUER
    keys = (await api.get("/.well-known/jwks.json")).json()["keys"]
    assert keys[0]["kty"] == "RSA"
    assert keys[0]["alg"] == "RS256"


async def connect_gcp(
    api: httpx.AsyncClient,
    org: Org,
    gke: FakeGke,
    cluster_name: str,
    project: str,
    account: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Connect (or, given the POST's `account`, finish connecting) a project, as its owner would."""
    body = {"clusterName": cluster_name, "targetProjectId": project, "targetProjectNumber": "555666777888"}
    if account is None:
        account = (await api.post("/v1/cloud-accounts/gcp", json=body, headers=org.headers())).json()["data"]
        assert account is not None
    script = account["cloudShellScript"]
    pool_id, provider_id = one(r"POOL_ID=(\S+)", script), one(r"PROVIDER_ID=(\S+)", script)
    audience = (
        "//iam.googleapis.com/projects/555666777888/locations/global/workloadIdentityPools/"
        f"{pool_id}/providers/{provider_id}"
    )
    gke.trust(audience, ISSUER, one(r'assertion.sub == "([^"]+)"', script), one(r"SA_EMAIL=(\S+)", script))
    assert (await wait_for_operation(api, org.headers(), account["id"]))["status"] == "SUCCEEDED"
    return account


async def connect_azure(
    api: httpx.AsyncClient, org: Org, arm: FakeArm, cluster_name: str, subscription: str, resource_group: str
) -> dict[str, Any]:
    body = {"clusterName": cluster_name, "subscriptionId": subscription, "resourceGroup": resource_group}
    account: dict[str, Any] = (await api.post("/v1/cloud-accounts/azure", json=body, headers=org.headers())).json()[
        "data"
    ]
    script = account["setupScript"]
    credential = json.loads(one(r"federated-credential create --id \"\$\{APP_ID\}\" --parameters '([^']+)'", script))
    client_id = str(uuid.uuid4())
    arm.federated[client_id] = (credential["issuer"], credential["subject"])
    await api.post(
        one(r"curl -fsS -X POST (\S+)", script).removeprefix(ISSUER),
        json={
            "token": one(r'\\"token\\": \\"([0-9a-f]+)\\"', script),
            "tenantId": arm.tenant_id,
            "clientId": client_id,
        },
    )
    assert (await wait_for_operation(api, org.headers(), account["id"]))["status"] == "SUCCEEDED"
    return account


async def test_a_connected_gcp_account_is_what_deploys_act_as(api: httpx.AsyncClient, org: Org, gke: FakeGke) -> None:
    account = await connect_gcp(api, org, gke, "fed-gke", "acme-fed-1")
    doc = cloud_document(
        "fed-gke",
        "gcp",
        "us-central1",
        {"type": "gke", "gke": {"kubernetesVersion": "1.32"}},
        [{"name": "workers", "machineTypes": ["e2-standard-4"], "minNode": 1, "maxNode": 2}],
    )
    accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", record
    assert gke.cluster("acme-fed-1", "us-central1", "fed-gke") is not None, "created in the account's project"
    assert set(gke.callers) == {account["serviceAccountEmail"]}, "every GKE call as the connected service account"


async def test_a_connected_azure_account_is_what_deploys_act_as(api: httpx.AsyncClient, org: Org, arm: FakeArm) -> None:
    subscription = str(uuid.uuid4())
    await connect_azure(api, org, arm, "fed-aks", subscription, "rg-fed")

    doc = cloud_document(
        "fed-aks",
        "azure",
        "eastus",
        {"type": "aks", "aks": {"kubernetesVersion": "1.32"}},
        [{"name": "workers", "machineTypes": ["Standard_D4s_v5"], "minNode": 1, "maxNode": 2}],
    )
    accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", record
    assert arm.cluster(subscription, "rg-fed", "fed-aks") is not None, "created in the account's subscription and group"


async def credential_workflows(temporal_client: Client, task_queue: str, expected: int) -> list[tuple[str, Any]]:
    """History and result of each credential workflow this test's requests ran."""
    query = f"TaskQueue = '{task_queue}' AND WorkflowType = 'IssueCloudCredentials'"
    for _ in range(200):  # visibility trails the executions a little
        ids = [w.id async for w in temporal_client.list_workflows(query)]
        if len(ids) >= expected:
            break
        await asyncio.sleep(0.05)
    assert len(ids) == expected, f"{len(ids)} credential workflows, expected {expected}"
    handles = [temporal_client.get_workflow_handle(i) for i in ids]
    return [(history_text(await h.fetch_history()), await h.result()) for h in handles]


async def test_issued_tokens_reach_the_caller_and_no_history_database_or_log(
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
    caplog.set_level(logging.WARNING, logger="httpx")  # the test client's own log of the URLs it calls
    await connect_gcp(api, org, gke, "vend-gke", "acme-vend-1")
    await connect_azure(api, org, arm, "vend-aks", str(uuid.uuid4()), "rg-vend")

    gcp = await api.post(
        "/v1/cloud-credentials/gcp",
        json={"clusterName": "vend-gke", "duration": 900 * 1_000_000_000},
        headers=org.headers(),
    )
    azure = await api.post("/v1/cloud-credentials/azure", json={"clusterName": "vend-aks"}, headers=org.headers())
    assert gcp.status_code == 200, gcp.text
    assert azure.status_code == 200, azure.text
    tokens = [gcp.json()["data"]["accessToken"], azure.json()["data"]["accessToken"]]
    assert gke.service_account_tokens[tokens[0]] == gcp.json()["data"]["serviceAccountEmail"], "a token GCP accepts"
    assert tokens[1] in arm.tokens, "a token ARM accepts"

    workflows = await credential_workflows(temporal_client, settings.task_queue, expected=2)
    histories = [history for history, _ in workflows]
    assert {a for a in ("gcp.issue_credentials", "azure.issue_credentials") for h in histories if a in h} == {
        "gcp.issue_credentials",
        "azure.issue_credentials",
    }, "each issued by its cloud's activity on the worker"
    # What the workflows returned is the sealed box, and the search below reads it (decoded).
    assert all(result["sealed"] and result["sealed"] in history for history, result in workflows)
    every_history = [
        history_text(await temporal_client.get_workflow_handle(w.id).fetch_history())
        async for w in temporal_client.list_workflows(f"TaskQueue = '{settings.task_queue}'")
    ]
    stored = await pool.fetch(
        """SELECT o.workflow_input::text || coalesce(o.result::text, '') || coalesce(o.metadata::text, '')
                  || coalesce(string_agg(e.message || coalesce(e.raw_output, '') || e.labels::text, ''), '') AS text
             FROM operations o LEFT JOIN operation_events e ON e.operation_id = o.id
            WHERE o.organization_id = $1 GROUP BY o.id""",
        org.id,
    )
    accounts = await pool.fetch(
        "SELECT identity::text || params::text || coalesce(error, '') AS text FROM federated_cloud_accounts"
        " WHERE organization_id = $1",
        org.id,
    )
    assert (await api.get("/v1/audit/events", headers=org.headers())).status_code == 200  # queued events written
    audit = await pool.fetch("SELECT details::text AS text FROM audit_events WHERE organization_id = $1", org.id)
    haystacks = {
        "credential workflow histories": "".join(histories),
        "workflow histories": "".join(every_history),
        "operations": "".join(r["text"] for r in stored),
        "accounts": "".join(r["text"] for r in accounts),
        "audit": "".join(r["text"] for r in audit),
        "logs": caplog.text,
    }
    for token in tokens:
        for name, text in haystacks.items():
            assert token not in text, f"an issued token found in {name}"


async def test_credentials_are_scoped_to_the_organization_and_need_an_admin(
    api: httpx.AsyncClient, org: Org, gke: FakeGke, pool: asyncpg.Pool
) -> None:
    await connect_gcp(api, org, gke, "scoped-gke", "acme-scoped-1")
    other_org = await create_organization(pool, f"other-{uuid.uuid4().hex[:8]}")
    _, other_owner = await create_api_key(pool, other_org, "other owner", "owner")
    body = {"clusterName": "scoped-gke"}
    foreign = await api.post("/v1/cloud-credentials/gcp", json=body, headers={"Authorization": f"Bearer {other_owner}"})
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "CLOUD_ACCOUNT_NOT_CONNECTED"
    for role in ("viewer", "editor"):
        _, key = await create_api_key(pool, org.id, role, role)
        refused = await api.post("/v1/cloud-credentials/gcp", json=body, headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 403, role
    _, admin = await create_api_key(pool, org.id, "admin", "admin")
    issued = await api.post("/v1/cloud-credentials/gcp", json=body, headers={"Authorization": f"Bearer {admin}"})
    assert issued.status_code == 200, issued.text
    assert issued.json()["data"]["projectId"] == "acme-scoped-1"


async def test_a_credentials_request_no_worker_answers_is_a_bounded_503(
    api: httpx.AsyncClient, org: Org, gke: FakeGke, settings: Settings
) -> None:
    await connect_gcp(api, org, gke, "unserved-gke", "acme-unserved-1")
    # Another API process whose task queue no worker polls.
    unserved = create_app(
        settings.model_copy(
            update={"task_queue": f"idle-{uuid.uuid4().hex[:8]}", "cloud_credentials_timeout_seconds": 1.0}
        )
    )
    async with unserved.router.lifespan_context(unserved):
        transport = httpx.ASGITransport(app=unserved)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterflow.test") as client:
            response = await client.post(
                "/v1/cloud-credentials/gcp", json={"clusterName": "unserved-gke"}, headers=org.headers()
            )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "CREDENTIALS_UNAVAILABLE"
    assert response.headers["Retry-After"]
    assert "accessToken" not in response.text


async def test_the_cli_shows_what_a_connection_grants_before_the_script_runs(
    api: httpx.AsyncClient, org: Org, settings: Settings, tmp_path: Path
) -> None:
    subscription = str(uuid.uuid4())
    body = {"clusterName": "cli-aks", "subscriptionId": subscription, "resourceGroup": "rg-cli", "level": "read"}
    account = (await api.post("/v1/cloud-accounts/azure", json=body, headers=org.headers())).json()["data"]
    api_settings = settings.model_copy(update={"api_port": free_port()})
    server = spawn("api", settings_env(api_settings), tmp_path / "api.log")
    url = f"http://127.0.0.1:{api_settings.api_port}"
    try:
        wait_http(f"{url}/healthz", server)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERFLOW_", "DATABASE_URL", "TEMPORAL_"))}
        env.update(CLUSTERFLOW_URL=url, CLUSTERFLOW_API_KEY=org.owner_key, COLUMNS="250")
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "clusterflow.cli.main", "cloud-accounts", "show", "azure", account["id"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop(server)
    assert shown.returncode == 0, shown.stderr
    assert "What level read grants" in shown.stdout
    assert "Azure Kubernetes Service Cluster User Role" in shown.stdout
    assert f"/subscriptions/{subscription}/resourceGroups/rg-cli" in shown.stdout
    assert "Contributor" not in shown.stdout  # read: no role that changes anything
