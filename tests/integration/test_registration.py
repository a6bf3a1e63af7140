"""Registered clusters end to end: the API served on a real port, a real worker, and the agent
as a real process reading a fake kube API through the real `kubernetes` client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import websockets
import yaml
from temporalio.client import Client
from websockets.exceptions import ConnectionClosed

from clusterflow.activities.agent import run_agent_monitor
from clusterflow.devstack.postgres import free_port
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.records.registrations import hash_secret
from clusterflow.settings import Settings
from tests.agent_support import (
    AGENT_NAMESPACE,
    AgentProcess,
    ServedApi,
    eventually,
    manifest_documents,
    registration_overrides,
    serve_api,
    token_from_manifest,
)
from tests.conftest import Org, Services, test_settings
from tests.fakes.kube_api import FakeKubeApi, FakeNode
from tests.helpers import wait_for_operation

pytestmark = pytest.mark.usefixtures("worker", "agent_monitor")


@pytest.fixture
def settings(services: Services, request: pytest.FixtureRequest) -> Settings:
    return test_settings(services, **registration_overrides(**getattr(request, "param", {})))


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[ServedApi]:
    async with serve_api(settings) as served:
        yield served


@pytest.fixture
async def agent_monitor(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[None]:
    """The heartbeat monitor every worker process runs."""
    task = asyncio.create_task(
        run_agent_monitor(pool, settings.agent_disconnect_after_seconds, settings.agent_monitor_interval_seconds)
    )
    yield
    task.cancel()


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    nodes = [
        FakeNode("n1", architecture="arm64", region="eu-west-1"),
        FakeNode("n2", architecture="arm64", region="eu-west-1"),
        FakeNode("n3", architecture="arm64", region="eu-west-1"),
    ]
    with FakeKubeApi(nodes=nodes) as fake:
        yield fake


@pytest.fixture
async def agents(tmp_path: Path) -> AsyncIterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        await agent.stop()


async def register(served: ServedApi, org: Org, name: str, **body: Any) -> dict[str, Any]:
    response = await served.client.post(
        f"/v1/clusters/{name}/register", json={"architecture": "arm64", **body}, headers=org.headers()
    )
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def registration(served: ServedApi, org: Org, name: str) -> dict[str, Any]:
    response = await served.client.get(f"/v1/clusters/{name}/registration", headers=org.headers())
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def connected_cluster(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path, name: str
) -> tuple[dict[str, Any], AgentProcess]:
    accepted = await register(served, org, name)
    agent = AgentProcess(kube, served.url, token_from_manifest(accepted), tmp_path)
    agents.append(agent)
    record = await wait_for_operation(served.client, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", (record, agent.output())
    return accepted, agent


async def test_registered_agent_connects_reports_the_cluster_and_the_registration_succeeds(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path, pool: asyncpg.Pool
) -> None:
    accepted = await register(served, org, "edge-1")
    assert accepted["status"] == "PENDING"
    kinds = [d["kind"] for d in manifest_documents(accepted)]
    for kind in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "Secret", "Deployment"):
        assert kind in kinds
    cluster_role = next(d for d in manifest_documents(accepted) if d["kind"] == "ClusterRole")
    assert all(
        "*" not in rule.get("verbs", []) and "*" not in rule.get("resources", []) for rule in cluster_role["rules"]
    )
    deployment = next(d for d in manifest_documents(accepted) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    token = token_from_manifest(accepted)
    assert token not in json.dumps(pod)  # the token comes from the Secret, never inline
    # The install script is one line that applies exactly this manifest.
    script = accepted["installScript"]
    assert "\n" not in script
    assert script.startswith("bash -euo pipefail -c ") and script.endswith(" | kubectl apply -f -'")
    encoded = re.search(r"printf %s (\S+) \| base64 -d", script)
    assert encoded is not None
    assert base64.b64decode(encoded.group(1)).decode() == accepted["manifest"]

    before = await registration(served, org, "edge-1")
    assert before["connectionStatus"] == "NEVER_CONNECTED"
    assert before["status"] == "RUNNING" or before["status"] == "PENDING"
    assert before["instructions"]["message"]

    agent = AgentProcess(kube, served.url, token, tmp_path)
    agents.append(agent)
    record = await wait_for_operation(served.client, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", (record, agent.output())
    assert record["operationType"] == "CLUSTER_REGISTER"
    assert record["result"] == {"kubernetesVersion": "1.31.2", "nodeCount": 3, "architecture": "arm64"}

    cluster = (await served.client.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    assert cluster["state"] == "ACTIVE"
    assert cluster["provider"] == "registered"
    assert cluster["kubernetesVersion"] == "1.31.2"
    assert cluster["region"] == "eu-west-1"  # registration omitted it; the agent read the node labels

    status = await registration(served, org, "edge-1")
    assert status["connectionStatus"] == "CONNECTED"
    assert status["status"] == "SUCCEEDED"
    assert status["lastHealthCheck"]
    assert status["agent"]["nodeCount"] == 3
    assert status["agent"]["namespaceCount"] == 3  # default, kube-system and the agent's
    assert status["agent"]["architecture"] == "arm64"
    assert status["agent"]["region"] == "eu-west-1"
    assert [e["status"] for e in status["connectionEvents"]] == ["CONNECTED"]

    # The credential the token bought is in the cluster; the control plane keeps only hashes.
    credential = kube.secret_data(AGENT_NAMESPACE, "clusterflow-agent-credential")
    assert credential is not None
    row = await pool.fetchrow("SELECT * FROM agent_registrations WHERE cluster_id = $1", accepted["clusterId"])
    assert bytes(row["credential_hash"]) == hash_secret(credential["credential"])
    assert bytes(row["token_hash"]) == hash_secret(token)
    dump = await pool.fetchval(
        "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM operations WHERE organization_id = $1) t", org.id
    )
    assert token not in dump
    for secret in (token, credential["credential"]):
        assert secret not in agent.output()
        assert base64.b64encode(secret.encode()).decode() not in agent.output()


async def test_a_replayed_registration_never_repeats_the_token(served: ServedApi, org: Org, pool: asyncpg.Pool) -> None:
    headers = org.headers() | {"Idempotency-Key": "register-edge-8"}
    first = await served.client.post("/v1/clusters/edge-8/register", json={"architecture": "amd64"}, headers=headers)
    assert first.status_code == 202, first.text
    token = token_from_manifest(first.json()["data"])
    replay = await served.client.post("/v1/clusters/edge-8/register", json={"architecture": "amd64"}, headers=headers)
    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["data"]["operationId"] == first.json()["data"]["operationId"]
    assert replay.json()["data"]["manifest"] is None
    assert token not in replay.text
    stored = await pool.fetchval("SELECT response::text FROM idempotency_keys WHERE organization_id = $1", org.id)
    assert token not in stored

    other_org = await create_organization(pool, "registration-other")
    _, other_key = await create_api_key(pool, other_org, "other", "owner")
    elsewhere = await served.client.get(
        "/v1/clusters/edge-8/registration", headers={"Authorization": f"Bearer {other_key}"}
    )
    assert elsewhere.status_code == 404
    taken = await served.client.post("/v1/clusters/edge-8/register", json={}, headers=org.headers())
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "CLUSTER_NAME_TAKEN"


async def test_a_used_registration_token_is_refused(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path
) -> None:
    accepted, _ = await connected_cluster(served, org, kube, agents, tmp_path, "edge-2")
    # Someone replays the token from another cluster.
    with FakeKubeApi() as other_kube:
        intruder = AgentProcess(other_kube, served.url, token_from_manifest(accepted), tmp_path, name="intruder")
        agents.append(intruder)
        assert await intruder.wait_exit() == 3
    assert "already used" in intruder.output()
    assert other_kube.secret_data(AGENT_NAMESPACE, "clusterflow-agent-credential") is None
    status = await registration(served, org, "edge-2")
    assert status["connectionStatus"] == "CONNECTED"


@pytest.mark.parametrize(
    "settings", [{"registration_token_ttl_seconds": 0.5, "registration_timeout_seconds": 3.0}], indirect=True
)
async def test_an_expired_token_is_refused_and_the_registration_times_out_with_instructions(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path
) -> None:
    accepted = await register(served, org, "late-1")
    await asyncio.sleep(0.6)
    agent = AgentProcess(kube, served.url, token_from_manifest(accepted), tmp_path)
    agents.append(agent)
    assert await agent.wait_exit() == 3
    assert "expired" in agent.output()

    record = await wait_for_operation(served.client, org.headers(), accepted["operationId"])
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "REGISTRATION_TIMED_OUT"
    assert "kubectl" in record["error"]["message"]
    status = await registration(served, org, "late-1")
    assert status["connectionStatus"] == "NEVER_CONNECTED"
    assert status["clusterState"] == "FAILED"
    assert "register again" in status["instructions"]["message"]

    # Registering again issues a new token for the same cluster record.
    again = await register(served, org, "late-1")
    assert again["clusterId"] == accepted["clusterId"]
    assert token_from_manifest(again) != token_from_manifest(accepted)


@pytest.mark.parametrize("settings", [{"registration_timeout_seconds": 1.0}], indirect=True)
async def test_a_token_is_refused_once_its_registration_timed_out(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path
) -> None:
    accepted = await register(served, org, "late-2")
    record = await wait_for_operation(served.client, org.headers(), accepted["operationId"])
    assert record["status"] == "FAILED"
    agent = AgentProcess(kube, served.url, token_from_manifest(accepted), tmp_path)
    agents.append(agent)
    assert await agent.wait_exit() == 3
    assert "register the cluster again" in agent.output()
    assert (await registration(served, org, "late-2"))["connectionStatus"] == "NEVER_CONNECTED"


async def test_a_cancelled_registration_ends_cancelled_and_its_token_stops_working(
    served: ServedApi,
    org: Org,
    kube: FakeKubeApi,
    agents: list[AgentProcess],
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    accepted = await register(served, org, "cancel-1")
    await wait_for_operation(served.client, org.headers(), accepted["operationId"], until={"RUNNING"})
    # What the API's cancel does: a Temporal cancellation of the operation's workflow.
    await temporal_client.get_workflow_handle(accepted["operationId"]).cancel()
    record = await wait_for_operation(served.client, org.headers(), accepted["operationId"])
    assert record["status"] == "CANCELLED"
    assert (await registration(served, org, "cancel-1"))["clusterState"] == "FAILED"
    agent = AgentProcess(kube, served.url, token_from_manifest(accepted), tmp_path)
    agents.append(agent)
    assert await agent.wait_exit() == 3


async def test_missing_heartbeats_mark_the_agent_disconnected_and_it_recovers(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path
) -> None:
    _, agent = await connected_cluster(served, org, kube, agents, tmp_path, "edge-3")
    os.kill(agent.process.pid, signal.SIGSTOP)  # alive but silent, as when a node freezes
    try:

        async def disconnected() -> bool:
            return (await registration(served, org, "edge-3"))["connectionStatus"] == "DISCONNECTED"

        await eventually(disconnected, what="DISCONNECTED")
        status = await registration(served, org, "edge-3")
        assert "stopped heartbeating" in status["instructions"]["message"]
    finally:
        os.kill(agent.process.pid, signal.SIGCONT)

    async def connected() -> dict[str, Any] | None:
        status = await registration(served, org, "edge-3")
        return status if status["connectionStatus"] == "CONNECTED" else None

    status = await eventually(connected, what="CONNECTED again")
    assert [e["status"] for e in status["connectionEvents"]] == ["CONNECTED", "DISCONNECTED", "CONNECTED"]
    assert "no heartbeat" in status["connectionEvents"][1]["message"]


async def test_the_agent_redials_after_an_api_restart_and_after_its_own_restart(
    settings: Settings, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path
) -> None:
    port = free_port()
    async with serve_api(settings, port) as served:
        _, agent = await connected_cluster(served, org, kube, agents, tmp_path, "edge-9")
    # The API went away (a deploy, a crash): the agent keeps redialling with backoff.
    async with serve_api(settings, port) as served:

        async def events() -> list[str] | None:
            status = await registration(served, org, "edge-9")
            statuses = [e["status"] for e in status["connectionEvents"]]
            return statuses if status["connectionStatus"] == "CONNECTED" and len(statuses) == 3 else None

        assert await eventually(events, what="reconnected after the API restart") == [
            "CONNECTED",
            "DISCONNECTED",
            "CONNECTED",
        ]
        assert agent.process.poll() is None

        # A restarted pod has no token any more (it was spent): it uses the stored credential.
        await agent.stop()
        restarted = AgentProcess(kube, served.url, None, tmp_path, name="restarted")
        agents.append(restarted)

        async def reconnected() -> bool:
            status = await registration(served, org, "edge-9")
            return status["connectionStatus"] == "CONNECTED" and len(status["connectionEvents"]) == 5

        await eventually(reconnected, what="reconnected after the agent restart")
        assert "redialling" in agent.output()


async def test_unregister_removes_the_agent_and_revokes_its_credential(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path, pool: asyncpg.Pool
) -> None:
    accepted, agent = await connected_cluster(served, org, kube, agents, tmp_path, "edge-4")
    credential = kube.secret_data(AGENT_NAMESPACE, "clusterflow-agent-credential")
    assert credential is not None

    response = await served.client.delete("/v1/clusters/edge-4/registration", headers=org.headers())
    assert response.status_code == 202, response.text
    record = await wait_for_operation(served.client, org.headers(), response.json()["data"]["operationId"])
    assert record["status"] == "SUCCEEDED", record
    assert record["operationType"] == "CLUSTER_UNREGISTER"
    assert record["result"] == {"agentRemoved": True}
    assert await agent.wait_exit() == 0

    assert AGENT_NAMESPACE not in kube.state.namespaces
    assert ("clusterroles", "clusterflow-agent") in kube.state.deleted_cluster_objects
    assert ("clusterrolebindings", "clusterflow-agent") in kube.state.deleted_cluster_objects
    cluster = (await served.client.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    assert cluster["state"] == "DELETED"
    assert await refused_close_code(served, credential["credential"]) == 4401


async def test_agent_only_unregister_tombstones_the_agent_and_keeps_the_cluster(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path
) -> None:
    accepted, agent = await connected_cluster(served, org, kube, agents, tmp_path, "edge-5")
    response = await served.client.delete(
        "/v1/clusters/edge-5/registration", params={"agent-only": "true"}, headers=org.headers()
    )
    assert response.status_code == 200, response.text
    assert await agent.wait_exit() == 0
    assert AGENT_NAMESPACE in kube.state.namespaces  # nothing removed from the cluster
    status = await registration(served, org, accepted["clusterId"])
    assert status["revoked"] is True
    assert status["connectionStatus"] == "DISCONNECTED"
    assert status["clusterState"] == "ACTIVE"
    credential = kube.secret_data(AGENT_NAMESPACE, "clusterflow-agent-credential")
    assert credential is not None
    assert await refused_close_code(served, credential["credential"]) == 4401


async def refused_close_code(served: ServedApi, secret: str) -> int | None:
    url = served.url.replace("http://", "ws://") + "/v1/agent/connect"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {secret}"}) as ws:
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


@pytest.fixture
def tls_kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(tls=True) as fake:
        yield fake


async def test_kubeconfig_answers_202_until_the_agent_issues_it_then_200(
    served: ServedApi, org: Org, tls_kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path, pool: asyncpg.Pool
) -> None:
    kube = tls_kube  # the agent verifies the API server's certificate; the kubeconfig carries its CA
    accepted, agent = await connected_cluster(served, org, kube, agents, tmp_path, "edge-6")
    cluster_id = accepted["clusterId"]
    os.kill(agent.process.pid, signal.SIGSTOP)  # the agent has not answered yet
    try:
        response = await served.client.post(
            f"/v1/clusters/{cluster_id}/kubeconfig",
            json={"clusterName": "edge-6", "duration": "1h", "credentials": {"type": "dynamic", "data": {}}},
            headers=org.headers(),
        )
        assert response.status_code == 202, response.text
        operation_id = response.json()["data"]["operationId"]
        pending = await served.client.get(f"/v1/clusters/{cluster_id}/kubeconfig", headers=org.headers())
        assert pending.status_code == 202
        assert pending.json()["data"]["status"] == "PENDING"
        assert pending.json()["data"]["kubeconfig"] is None
    finally:
        os.kill(agent.process.pid, signal.SIGCONT)

    record = await wait_for_operation(served.client, org.headers(), operation_id)
    assert record["status"] == "SUCCEEDED", record
    assert record["operationType"] == "KUBECONFIG_GENERATE"
    ready = await served.client.get(f"/v1/clusters/{cluster_id}/kubeconfig", headers=org.headers())
    assert ready.status_code == 200
    data = ready.json()["data"]
    assert data["status"] == "READY"
    assert data["expiresAt"]
    issued = kube.state.issued_tokens[-1]
    assert issued["expirationSeconds"] == 3600
    assert issued["serviceAccount"] == "clusterflow-kubeconfig"
    config = yaml.safe_load(data["kubeconfig"])
    assert config["users"][0]["user"]["token"] == issued["token"]
    assert config["clusters"][0]["cluster"]["server"] == kube.url
    assert kube.ca_file is not None
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == kube.ca_file.read_bytes()
    stored = await pool.fetchrow("SELECT * FROM kubeconfigs WHERE operation_id = $1", operation_id)
    assert issued["token"].encode() not in bytes(stored["ciphertext"])

    _, viewer_key = await create_api_key(pool, org.id, "viewer", "viewer")
    viewer = {"Authorization": f"Bearer {viewer_key}"}
    assert (await served.client.get(f"/v1/clusters/{cluster_id}/kubeconfig", headers=viewer)).status_code == 403

    too_long = await served.client.post(
        f"/v1/clusters/{cluster_id}/kubeconfig",
        json={"clusterName": "edge-6", "duration": "900h"},
        headers=org.headers(),
    )
    assert too_long.status_code == 422
    assert too_long.json()["error"]["details"][0]["field"] == "duration"


async def test_a_cancelled_kubeconfig_generation_is_reported_failed_not_pending(
    served: ServedApi,
    org: Org,
    kube: FakeKubeApi,
    agents: list[AgentProcess],
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    accepted, agent = await connected_cluster(served, org, kube, agents, tmp_path, "edge-10")
    os.kill(agent.process.pid, signal.SIGSTOP)
    try:
        response = await served.client.post(
            f"/v1/clusters/{accepted['clusterId']}/kubeconfig",
            json={"clusterName": "edge-10", "duration": 3_600_000_000_000},
            headers=org.headers(),
        )
        assert response.status_code == 202, response.text
        operation_id = response.json()["data"]["operationId"]
        await wait_for_operation(served.client, org.headers(), operation_id, until={"RUNNING"})
        await temporal_client.get_workflow_handle(operation_id).cancel()
        record = await wait_for_operation(served.client, org.headers(), operation_id)
        assert record["status"] == "CANCELLED"
    finally:
        os.kill(agent.process.pid, signal.SIGCONT)
    answer = await served.client.get(f"/v1/clusters/{accepted['clusterId']}/kubeconfig", headers=org.headers())
    assert answer.status_code == 200
    assert answer.json()["data"]["status"] == "FAILED"
    assert answer.json()["data"]["kubeconfig"] is None


async def test_resync_rotates_the_agent_credential(
    served: ServedApi, org: Org, kube: FakeKubeApi, agents: list[AgentProcess], tmp_path: Path, pool: asyncpg.Pool
) -> None:
    accepted, _ = await connected_cluster(served, org, kube, agents, tmp_path, "edge-7")
    old = kube.secret_data(AGENT_NAMESPACE, "clusterflow-agent-credential")
    assert old is not None
    response = await served.client.post(f"/v1/clusters/{accepted['clusterId']}/resync", headers=org.headers())
    assert response.status_code == 202, response.text
    record = await wait_for_operation(served.client, org.headers(), response.json()["data"]["operationId"])
    assert record["status"] == "SUCCEEDED", record
    assert record["operationType"] == "CLUSTER_RESYNC"

    new = kube.secret_data(AGENT_NAMESPACE, "clusterflow-agent-credential")
    assert new is not None
    assert new != old
    row = await pool.fetchrow(
        "SELECT credential_hash FROM agent_registrations WHERE cluster_id = $1", accepted["clusterId"]
    )
    assert bytes(row["credential_hash"]) == hash_secret(new["credential"])
    assert await refused_close_code(served, old["credential"]) == 4401
    assert (await registration(served, org, "edge-7"))["connectionStatus"] == "CONNECTED"


async def test_register_dry_run_returns_the_manifest_and_persists_nothing(
    served: ServedApi, org: Org, pool: asyncpg.Pool
) -> None:
    response = await served.client.post(
        "/v1/clusters/dry-1/register", json={"architecture": "amd64", "dryRun": True}, headers=org.headers()
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "DRY_RUN"
    assert data["operationId"] is None
    assert {d["kind"] for d in manifest_documents(data)} >= {"Namespace", "Deployment", "Secret"}
    assert await pool.fetchval("SELECT count(*) FROM clusters WHERE organization_id = $1", org.id) == 0
    assert await pool.fetchval("SELECT count(*) FROM operations WHERE organization_id = $1", org.id) == 0

    bad = await served.client.post("/v1/clusters/dry-1/register", json={"architecture": "s390x"}, headers=org.headers())
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "architecture"
