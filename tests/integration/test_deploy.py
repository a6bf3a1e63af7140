"""A cluster deploy end to end: API in-process, real worker, real Temporal and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
import httpx
import pytest

from clusterflow.devstack.temporal import temporal_cli
from clusterflow.records import local_cloud
from tests.conftest import Org, Services
from tests.helpers import all_events, deploy_document, wait_for_operation

pytestmark = pytest.mark.usefixtures("worker")


async def test_deploy_runs_every_phase_and_leaves_an_active_cluster(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, services: Services
) -> None:
    response = await api.post("/v1/clusters", json=deploy_document("demo-1"), headers=org.headers())
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "success"
    accepted = body["data"]
    assert accepted["status"] == "PENDING"
    assert response.headers["Location"] == f"/v1/operations/{accepted['operationId']}"
    assert response.headers["X-Request-ID"] == body["id"]

    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", record
    assert record["progressPercentage"] == 100
    assert record["operationType"] == "CLUSTER_DEPLOY"
    assert record["error"] is None
    assert record["startedAt"]
    assert record["completedAt"]
    assert record["lastUpdate"]
    assert record["isCancelable"] is False

    events = await all_events(api, org.headers(), accepted["operationId"])
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    phases_started = [e["phase"] for e in events if e["kind"] == "phase" and e["message"].endswith("started")]
    assert phases_started == ["VALIDATE", "NETWORK", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"]
    progress = [e["progressPercentage"] for e in events if e["progressPercentage"] is not None]
    assert progress == sorted(progress)
    assert progress[-1] == 100
    assert events[-1]["kind"] == "status"
    assert events[-1]["labels"]["status"] == "SUCCEEDED"
    assert record["recentEvents"] == events[-20:]

    cluster = (await api.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    assert cluster["state"] == "ACTIVE"
    assert cluster["kubernetesVersion"] == "1.31"
    assert cluster["clusterName"] == "demo-1"
    assert [g["name"] for g in cluster["workerNodes"]] == ["workers", "batch"]
    assert cluster["controlPlaneNode"]["name"] == "cp"
    assert cluster["activeOperationId"] is None

    listed = (await api.get("/v1/clusters", headers=org.headers())).json()["data"]
    assert [c["clusterId"] for c in listed] == [accepted["clusterId"]]

    spec = (await api.get(f"/v1/clusters/{accepted['clusterId']}/spec", headers=org.headers())).json()["data"]
    assert spec == deploy_document("demo-1")

    history = (await api.get(f"/v1/clusters/{accepted['clusterId']}/operations", headers=org.headers())).json()
    assert history["data"]["totalCount"] == 1
    assert history["data"]["operations"][0]["operationId"] == accepted["operationId"]

    progress_view = (await api.get(f"/v1/clusters/{accepted['clusterId']}/progress", headers=org.headers())).json()
    assert progress_view["data"]["operationId"] == accepted["operationId"]
    assert progress_view["data"]["recentEvents"]

    resources = {(r.kind, r.name) for r in await local_cloud.list_resources(pool, accepted["clusterId"])}
    assert ("control_plane", "control-plane") in resources
    assert ("node_group", "workers") in resources
    assert ("node_group", "batch") in resources

    # The workflow is a real Temporal execution with ID = operation ID.
    described = subprocess.run(
        [
            temporal_cli(),
            "workflow",
            "describe",
            "-w",
            accepted["operationId"],
            "--address",
            services.temporal_address,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"ClusterDeploy"' in described.stdout
    assert "COMPLETED" in described.stdout


async def test_progress_is_visible_while_the_deploy_runs(api: httpx.AsyncClient, org: Org) -> None:
    doc = deploy_document("slow-1", phaseSeconds=0.4)
    accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
    running = await wait_for_operation(api, org.headers(), accepted["operationId"], until={"RUNNING"})
    assert running["isCancelable"] is True
    cluster = (await api.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    assert cluster["state"] == "PROVISIONING"
    assert cluster["activeOperationId"] == accepted["operationId"]
    seen_phases = set()
    while True:
        record = (await api.get(f"/v1/operations/{accepted['operationId']}", headers=org.headers())).json()["data"]
        if record["currentPhase"]:
            seen_phases.add(record["currentPhase"])
        if record["status"] == "SUCCEEDED":
            break
        await asyncio.sleep(0.05)
    assert {"NETWORK", "CONTROL_PLANE", "NODE_GROUPS"} <= seen_phases


async def test_injected_permanent_failure_ends_failed_with_a_stable_code(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    doc = deploy_document("broken-1", failAt="CONTROL_PLANE")
    accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "FAILED"
    assert record["currentPhase"] == "CONTROL_PLANE"
    assert record["error"]["code"] == "SIMULATED_FAILURE"
    assert record["error"]["retryable"] is False
    assert "CONTROL_PLANE" in record["error"]["message"]
    events = await all_events(api, org.headers(), accepted["operationId"])
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    # A permanent error is not retried: one attempt, no retry event.
    assert not [e for e in events if "retrying" in e["message"]]
    assert events[-1]["level"] == "ERROR"
    assert events[-1]["labels"]["errorCode"] == "SIMULATED_FAILURE"
    cluster = (await api.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    assert cluster["state"] == "FAILED"
    # Nothing past the failing phase was created.
    kinds = {r.kind for r in await local_cloud.list_resources(pool, accepted["clusterId"])}
    assert "node_group" not in kinds
    assert "control_plane" not in kinds


async def test_transient_failure_is_retried_visibly_and_the_deploy_succeeds(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    doc = deploy_document("flaky-1", failAt="NETWORK", failTimes=2)
    accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", record
    events = await all_events(api, org.headers(), accepted["operationId"])
    failed = [e for e in events if e["phase"] == "NETWORK" and e["message"].startswith("NETWORK attempt")]
    retried = [e for e in events if e["phase"] == "NETWORK" and e["message"].startswith("retrying NETWORK")]
    assert [e["labels"]["attempt"] for e in failed] == ["1", "2"]
    assert all(e["level"] == "WARN" and e["message"].endswith("will retry") for e in failed)
    assert [e["labels"]["attempt"] for e in retried] == ["2", "3"]
    calls = await local_cloud.api_calls(pool, accepted["clusterId"])
    assert len([c for c in calls if c.kind == "network"]) == 1


async def test_transient_failures_beyond_the_attempt_budget_fail_as_retryable(api: httpx.AsyncClient, org: Org) -> None:
    doc = deploy_document("flaky-2", failAt="ADDONS", failTimes=50)
    accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "SIMULATED_FAILURE"
    assert record["error"]["retryable"] is True
    events = await all_events(api, org.headers(), accepted["operationId"])
    last_attempt = [e for e in events if e["message"].startswith("ADDONS attempt 5 failed")]
    assert last_attempt
    assert last_attempt[0]["level"] == "ERROR"


async def test_unsupported_version_is_refused_before_anything_is_created(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    # The local provider's VALIDATE would refuse it; the API refuses it first, dry run or not.
    doc = deploy_document("old-1")
    doc["spec"]["provisioner"]["local"]["kubernetesVersion"] = "1.20"
    for params in ({"dryRun": "true"}, {}):
        response = await api.post("/v1/clusters", params=params, json=doc, headers=org.headers())
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "INVALID_SPEC"
        assert error["details"][0]["field"] == "spec.provisioner.local.kubernetesVersion"
        assert "1.20" in error["details"][0]["message"]
    assert await pool.fetchval("SELECT count(*) FROM clusters WHERE organization_id = $1", org.id) == 0
    assert await pool.fetchval("SELECT count(*) FROM operations WHERE organization_id = $1", org.id) == 0
