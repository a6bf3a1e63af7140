"""Crashes at the worst moments: nothing stranded, nothing done twice, no event lost.

The processes are the real `clusterflow worker` and `clusterflow api`, killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from clusterflow.devstack.postgres import free_port
from clusterflow.records import local_cloud
from clusterflow.settings import Settings
from tests.conftest import Org, Services, test_settings
from tests.helpers import all_events, deploy_document, wait_for_operation
from tests.processes import kill_hard, settings_env, spawn, stop, wait_http


async def _wait_for_phase(api: httpx.AsyncClient, org: Org, operation_id: str, phase: str) -> None:
    for _ in range(600):
        record = (await api.get(f"/v1/operations/{operation_id}", headers=org.headers())).json()["data"]
        if record["currentPhase"] == phase:
            return
        assert record["status"] in {"PENDING", "RUNNING"}, record
        await asyncio.sleep(0.02)
    raise AssertionError(f"never reached {phase}")


@pytest.fixture
def crash_settings(services: Services) -> Settings:
    # A lost activity is noticed after one heartbeat timeout; keep it short so the test is quick.
    return test_settings(services, activity_heartbeat_timeout_seconds=2.0)


async def test_worker_killed_mid_deploy_completes_with_every_side_effect_once(
    services: Services, crash_settings: Settings, org: Org, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from clusterflow.api.app import create_app

    env = settings_env(crash_settings)
    first = spawn("worker", env, tmp_path / "worker-1.log")
    app = create_app(crash_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            doc = deploy_document("crashy", phaseSeconds=1.5)
            accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
            await _wait_for_phase(api, org, accepted["operationId"], "CONTROL_PLANE")
            await asyncio.sleep(0.3)  # the control plane was requested and is being created
            kill_hard(first)
            second = spawn("worker", env, tmp_path / "worker-2.log")
            try:
                record = await wait_for_operation(api, org.headers(), accepted["operationId"], timeout=90)
                events = await all_events(api, org.headers(), accepted["operationId"])
            finally:
                stop(second)

    assert record["status"] == "SUCCEEDED", record
    calls = await local_cloud.api_calls(pool, accepted["clusterId"])
    creates = Counter((c.kind, c.name) for c in calls if c.action == "create")
    assert creates, "the simulated cloud saw no calls"
    assert set(creates.values()) == {1}, creates
    assert ("control_plane", "control-plane") in creates
    assert ("node_group", "batch") in creates
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    messages = Counter(e["message"] for e in events)
    assert all(count == 1 for count in messages.values()), messages
    # The lost run was re-checked on the new worker, which found the resource already there.
    assert any(e["message"].startswith("re-checking CONTROL_PLANE after a worker restart") for e in events)
    assert "found existing control_plane control-plane" in messages


def _black_hole() -> socket.socket:
    """A port that accepts TCP connections and never answers: calls to it hang."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def test_api_killed_between_commit_and_workflow_start_strands_nothing(
    services: Services, settings: Settings, org: Org, pool: asyncpg.Pool, temporal_client: Client, tmp_path: Path
) -> None:
    hole = _black_hole()
    api_settings = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{hole.getsockname()[1]}", "api_port": free_port()}
    )
    api_process = spawn("api", settings_env(api_settings), tmp_path / "api.log")
    base = f"http://127.0.0.1:{api_settings.api_port}"
    try:
        wait_http(f"{base}/healthz", api_process)
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            request = asyncio.create_task(
                client.post("/v1/clusters", json=deploy_document("orphan"), headers=org.headers())
            )
            row = None
            for _ in range(500):
                row = await pool.fetchrow("SELECT id, status FROM operations WHERE organization_id = $1", org.id)
                if row is not None:
                    break
                await asyncio.sleep(0.01)
            assert row is not None, "the API never committed the operation"
            kill_hard(api_process)  # committed, workflow start still hanging on the dead Temporal
            with pytest.raises(httpx.HTTPError):
                await request
    finally:
        stop(api_process)
        hole.close()

    operation_id = row["id"]
    stranded = await pool.fetchrow("SELECT status, workflow_started_at FROM operations WHERE id = $1", operation_id)
    assert stranded["status"] == "PENDING"
    assert stranded["workflow_started_at"] is None

    worker = spawn("worker", settings_env(settings), tmp_path / "worker.log")
    try:
        for _ in range(600):
            status = await pool.fetchval("SELECT status FROM operations WHERE id = $1", operation_id)
            if status in {"SUCCEEDED", "FAILED"}:
                break
            await asyncio.sleep(0.05)
    finally:
        stop(worker)
    assert status == "SUCCEEDED"
    description = await temporal_client.get_workflow_handle(operation_id).describe()
    assert description.workflow_type == "ClusterDeploy"


async def test_temporal_unavailable_answers_503_and_enqueues_nothing(
    settings: Settings, org: Org, pool: asyncpg.Pool
) -> None:
    from clusterflow.api.app import create_app

    dead = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})  # nothing listens
    app = create_app(dead)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            headers = org.headers() | {"Idempotency-Key": "while-down"}
            response = await api.post("/v1/clusters", json=deploy_document("later"), headers=headers)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"]
            assert response.json()["error"]["code"] == "ORCHESTRATOR_UNAVAILABLE"
            # Nothing is left enqueued or holding the name, and the key is free for the retry.
            assert (await api.get("/v1/clusters", headers=org.headers())).json()["data"] == []
            active = await pool.fetchval(
                "SELECT count(*) FROM operations WHERE organization_id = $1 AND status <> 'FAILED'", org.id
            )
            assert active == 0
            assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE organization_id = $1", org.id) == 0
            ready = await api.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["temporal"] != "ok"


async def test_a_temporal_that_never_answers_gets_a_503_within_the_start_timeout(
    settings: Settings, org: Org, pool: asyncpg.Pool
) -> None:
    """A hung Temporal (accepts connections, never answers) must not hold the client forever."""
    from clusterflow.api.app import create_app

    hole = _black_hole()
    hung = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{hole.getsockname()[1]}", "temporal_call_timeout_seconds": 1.0}
    )
    app = create_app(hung)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                started = time.monotonic()
                response = await asyncio.wait_for(
                    api.post("/v1/clusters", json=deploy_document("hung"), headers=org.headers()), 60
                )
                elapsed = time.monotonic() - started
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"]
                # The bound is the setting (1 s here), not the default 5 s; the rest is the DB work.
                assert elapsed < 1.0 + 3, f"answered after {elapsed:.1f}s"
                left = await pool.fetchval(
                    "SELECT count(*) FROM operations WHERE organization_id = $1 AND cluster_name = 'hung'", org.id
                )
                assert left == 0  # withdrawn: not even a FAILED record
    finally:
        hole.close()
