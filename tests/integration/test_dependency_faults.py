"""A dependency that is down: every route answers 503 with `Retry-After` and a stable code, the
log says so once per outage, and a refused enqueue leaves nothing behind.

PostgreSQL is stopped for real (a server of this module's own, so other tests keep theirs),
Temporal is unreachable (an address nothing listens on) or frozen (SIGSTOP of a dev server of
the test's own). Everything is driven through the HTTP API and checked in the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.client import Client

from clusterflow.api.app import create_app
from clusterflow.devstack.postgres import EmbeddedPostgres, free_port
from clusterflow.devstack.temporal import EmbeddedTemporal
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from clusterflow.worker.main import build_worker
from tests.conftest import Org, Services, test_settings
from tests.helpers import deploy_document, wait_for_operation
from tests.processes import settings_env, spawn, stop


@asynccontextmanager
async def _serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterflow.test") as client:
            yield client


def _unavailable_count(dependency: str) -> float:
    value = REGISTRY.get_sample_value("clusterflow_dependency_unavailable_total", {"dependency": dependency})
    return value or 0.0


def _assert_503(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["code"] == code


# --- PostgreSQL down -----------------------------------------------------------------------


@dataclass
class OwnDatabase:
    postgres: EmbeddedPostgres
    org: Org


@pytest.fixture(scope="module")
def own_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnDatabase]:
    """A PostgreSQL this module may stop, migrated, with one organization."""
    postgres = EmbeddedPostgres(tmp_path_factory.mktemp("faults") / "pg" / "data", free_port())
    postgres.start()

    async def prepare() -> Org:
        await migrate(postgres.dsn)
        conn = await asyncpg.connect(postgres.dsn)
        try:
            org_id = await create_organization(conn, f"faults-{uuid.uuid4().hex[:8]}")
            _, key = await create_api_key(conn, org_id, "owner", "owner")
        finally:
            await conn.close()
        return Org(org_id, key)

    try:
        yield OwnDatabase(postgres, asyncio.run(prepare()))
    finally:
        postgres.stop()


async def _until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def test_postgres_down_answers_503_database_unavailable_logged_once_and_recovers(
    services: Services, own_database: OwnDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    postgres, org = own_database.postgres, own_database.org
    settings = test_settings(services, database_url=postgres.dsn)
    async with _serve(settings) as api:
        accepted = await api.post("/v1/clusters", json=deploy_document("before"), headers=org.headers())
        assert accepted.status_code == 202, accepted.text
        operation_id = accepted.json()["data"]["operationId"]
        assert (await api.get(f"/v1/operations/{operation_id}", headers=org.headers())).status_code == 200

        before = _unavailable_count("database")
        caplog.clear()
        caplog.set_level(logging.INFO)
        postgres.stop()
        try:
            # The cached record is served until this process's LISTEN connection notices the
            # outage; from then on it is read from the database like everything else.
            async def cached_read_refused() -> bool:
                response = await api.get(f"/v1/operations/{operation_id}", headers=org.headers())
                assert response.status_code in (200, 503), response.text
                return response.status_code == 503

            await _until(cached_read_refused)
            answers = []
            for i in range(3):
                answers.append(
                    await api.post("/v1/clusters", json=deploy_document(f"during-{i}"), headers=org.headers())
                )
                answers.append(await api.get("/v1/clusters", headers=org.headers()))
                answers.append(await api.get(f"/v1/operations/{operation_id}", headers=org.headers()))
            for response in answers:
                _assert_503(response, "DATABASE_UNAVAILABLE")
            assert _unavailable_count("database") - before >= len(answers)
        finally:
            postgres.start()

        async def served_again() -> bool:
            return (await api.get("/v1/clusters", headers=org.headers())).status_code == 200

        await _until(served_again)
        after = await api.post("/v1/clusters", json=deploy_document("after"), headers=org.headers())
        assert after.status_code == 202, after.text
        assert (await api.get(f"/v1/operations/{operation_id}", headers=org.headers())).status_code == 200
        listed = (await api.get("/v1/clusters", headers=org.headers())).json()["data"]
        assert {c["clusterName"] for c in listed} == {"before", "after"}  # nothing from the refused deploys

        async def recovery_logged() -> bool:
            return any("database available again" in r.getMessage() for r in caplog.records)

        await _until(recovery_logged)

    outage_warnings = [
        r
        for r in caplog.records
        if r.name == "clusterflow.api.dependency_faults" and r.levelno == logging.WARNING and "unavailable (" in r.msg
    ]
    assert len(outage_warnings) == 1, [r.getMessage() for r in outage_warnings]
    assert "database" in outage_warnings[0].getMessage()
    tracebacks = [r for r in caplog.records if r.exc_info is not None and r.name.startswith("clusterflow.api")]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]


async def test_a_postgres_outage_is_one_warning_and_one_recovery_from_the_background_loops(
    services: Services, own_database: OwnDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """No request meets the outage: the API's own loops do (the guard heartbeat every 0.2 s, the
    LISTEN connection, the pool refilling its floor). The log says the database is unavailable
    once and available again once, with no traceback and no line per retry."""
    postgres, org = own_database.postgres, own_database.org
    settings = test_settings(services, database_url=postgres.dsn, instance_heartbeat_seconds=0.2, db_pool_min=2)
    async with _serve(settings) as api:
        assert (await api.get("/v1/clusters", headers=org.headers())).status_code == 200
        caplog.clear()
        caplog.set_level(logging.INFO)
        postgres.stop()
        try:
            await asyncio.sleep(3)  # some 15 rounds of the guard loop
        finally:
            postgres.start()

        async def recovered() -> bool:
            said = any("database available again" in r.getMessage() for r in caplog.records)
            return said and (await api.get("/v1/clusters", headers=org.headers())).status_code == 200

        await _until(recovered)
        await asyncio.sleep(1)  # a few more rounds, on the database that is back

    tracebacks = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]
    assert tracebacks == []
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    down = [m for name, _, m in messages if name == "clusterflow.api.dependency_faults" and "unavailable (" in m]
    up = [m for name, _, m in messages if name == "clusterflow.api.dependency_faults" and "available again" in m]
    assert len(down) == 1 and down[0].startswith("database"), down
    assert len(up) == 1, up
    retries = [m for _, level, m in messages if level >= logging.WARNING and "retrying" in m]
    assert retries == []


async def test_an_enqueue_whose_start_and_withdrawal_both_fail_is_accepted_and_run_by_the_reconciler(
    services: Services, own_database: OwnDatabase, tmp_path: Path
) -> None:
    """Temporal hangs, and PostgreSQL goes down before the API can withdraw the committed
    operation: the row is the operation's outbox, so the answer is 202, not a 503 claiming
    nothing was enqueued, and a worker's reconciler runs it once both are back."""
    postgres, org = own_database.postgres, own_database.org
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts connections, never answers
    settings = test_settings(
        services,
        database_url=postgres.dsn,
        temporal_address=f"127.0.0.1:{hole.getsockname()[1]}",
        temporal_call_timeout_seconds=5.0,
    )
    try:
        async with _serve(settings) as api:
            request = asyncio.create_task(
                api.post("/v1/clusters", json=deploy_document("outbox"), headers=org.headers())
            )
            watcher = await asyncpg.connect(postgres.dsn)
            try:

                async def committed() -> bool:
                    return bool(await watcher.fetchval("SELECT count(*) FROM operations WHERE cluster_name = 'outbox'"))

                await _until(committed, timeout=10)
            finally:
                await watcher.close()
            postgres.stop()  # while the start still hangs
            try:
                response = await request
            finally:
                postgres.start()
    finally:
        hole.close()
    assert response.status_code == 202, response.text
    operation_id = response.json()["data"]["operationId"]

    worker_settings = test_settings(services, database_url=postgres.dsn, task_queue=settings.task_queue)
    worker = spawn("worker", settings_env(worker_settings), tmp_path / "worker.log")
    try:
        conn = await asyncpg.connect(postgres.dsn)
        try:

            async def finished() -> bool:
                status = await conn.fetchval("SELECT status FROM operations WHERE id = $1", operation_id)
                return status in {"SUCCEEDED", "FAILED", "CANCELLED"}

            await _until(finished, timeout=90)
            assert await conn.fetchval("SELECT status FROM operations WHERE id = $1", operation_id) == "SUCCEEDED"
        finally:
            await conn.close()
    finally:
        stop(worker)


async def test_an_enqueue_whose_row_a_reconciler_holds_answers_within_the_bound_and_stays_to_run(
    services: Services, own_database: OwnDatabase
) -> None:
    """Temporal hangs, and a worker's reconciler has locked the committed row to start it itself
    (`operations.unstarted` holds the lock while its own start waits on Temporal). The API does
    not wait for that lock to withdraw: it answers within its bound, 202, since the reconciler
    owns the start now, and the row stays as the operation's outbox. (The full chaos run met
    this: 30 enqueues against a frozen Temporal, the slowest answered after 32 s.)"""
    postgres, org = own_database.postgres, own_database.org
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts connections, never answers
    bound = 2.0
    settings = test_settings(
        services,
        database_url=postgres.dsn,
        temporal_address=f"127.0.0.1:{hole.getsockname()[1]}",
        temporal_call_timeout_seconds=bound,
    )
    name = f"claimed-{uuid.uuid4().hex[:8]}"
    reconciler = await asyncpg.connect(postgres.dsn)
    try:
        async with _serve(settings) as api:
            started = time.monotonic()
            request = asyncio.create_task(api.post("/v1/clusters", json=deploy_document(name), headers=org.headers()))
            claim = reconciler.transaction()
            await claim.start()
            row = None
            while row is None:  # as the reconciler claims it: FOR UPDATE SKIP LOCKED, once committed
                assert time.monotonic() - started < 10, "the operation was never committed"
                row = await reconciler.fetchrow(
                    "SELECT id, cluster_id FROM operations WHERE cluster_name = $1 FOR UPDATE SKIP LOCKED", name
                )
                await asyncio.sleep(0.02)
            done, _ = await asyncio.wait({request}, timeout=bound + 8)
            elapsed = time.monotonic() - started
            await claim.rollback()  # the reconciler's own start failed: the row is still its outbox
            response = await request
        assert request in done, f"the enqueue waited for the reconciler's lock ({elapsed:.1f}s)"
        assert response.status_code == 202, response.text
        assert response.json()["data"]["operationId"] == row["id"]
        assert await reconciler.fetchval("SELECT status FROM operations WHERE id = $1", row["id"]) == "PENDING"
    finally:
        hole.close()
        await reconciler.execute("DELETE FROM operations WHERE cluster_name = $1", name)
        await reconciler.execute("DELETE FROM clusters WHERE name = $1", name)
        await reconciler.close()


async def test_an_exhausted_pool_answers_503_database_unavailable_within_the_acquire_timeout(
    services: Services, org: Org
) -> None:
    settings = test_settings(
        services, db_pool_min=1, db_pool_max=1, db_acquire_timeout_seconds=0.5, api_key_cache_seconds=0
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterflow.test") as api:
            assert (await api.get("/v1/clusters", headers=org.headers())).status_code == 200
            async with app.state.pool.acquire():  # the only connection, held
                started = time.monotonic()
                response = await api.get("/v1/clusters", headers=org.headers())
                _assert_503(response, "DATABASE_UNAVAILABLE")
                assert time.monotonic() - started < 10
            assert (await api.get("/v1/clusters", headers=org.headers())).status_code == 200


# --- Temporal unreachable: a refused enqueue leaves nothing --------------------------------


async def _rows(pool: asyncpg.Pool, org: Org) -> dict[str, int]:
    counts = {}
    for table in ("operations", "clusters", "idempotency_keys", "agent_registrations"):
        counts[table] = int(
            await pool.fetchval(f"SELECT count(*) FROM {table} WHERE organization_id = $1", org.id)  # noqa: S608
        )
    counts["events"] = int(
        await pool.fetchval(
            "SELECT count(*) FROM operation_events e JOIN operations o ON o.id = e.operation_id "
            "WHERE o.organization_id = $1",
            org.id,
        )
    )
    return counts


@pytest.mark.usefixtures("worker")
async def test_refused_enqueues_leave_no_operation_cluster_or_history_and_free_the_key(
    api: httpx.AsyncClient, settings: Settings, org: Org, pool: asyncpg.Pool
) -> None:
    policy = await api.put(
        f"/v1/organizations/{org.id}/approval-policy", json={"clusterDelete": False}, headers=org.headers()
    )
    assert policy.status_code == 200, policy.text
    deployed = await api.post("/v1/clusters", json=deploy_document("kept"), headers=org.headers())
    assert deployed.status_code == 202, deployed.text
    cluster_id = deployed.json()["data"]["clusterId"]
    await wait_for_operation(api, org.headers(), deployed.json()["data"]["operationId"])
    history = (await api.get(f"/v1/clusters/{cluster_id}/operations", headers=org.headers())).json()["data"]
    before = await _rows(pool, org)

    update = {
        "apiVersion": "clusterflow.dev/v1",
        "kind": "K8sClusterUpdate",
        "spec": {"tags": {"team": "payments"}},
    }
    requests = [
        ("POST", "/v1/clusters", deploy_document("refused"), "deploy-key"),
        ("PATCH", f"/v1/clusters/{cluster_id}", update, "update-key"),
        ("DELETE", f"/v1/clusters/{cluster_id}", None, "delete-key"),
        ("POST", "/v1/clusters/edge-refused/register", {"architecture": "amd64"}, "register-key"),
    ]
    dead = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "temporal_call_timeout_seconds": 2.0}
    )
    async with _serve(dead) as down:
        for method, path, body, key in requests:
            headers = org.headers() | {"Idempotency-Key": key}
            response = await down.request(method, path, json=body, headers=headers)
            _assert_503(response, "ORCHESTRATOR_UNAVAILABLE")

    assert await _rows(pool, org) == before  # no operation, cluster, event or key of theirs
    state = (await api.get(f"/v1/clusters/{cluster_id}", headers=org.headers())).json()["data"]["state"]
    assert state == "ACTIVE"
    assert (await api.get(f"/v1/clusters/{cluster_id}/operations", headers=org.headers())).json()["data"] == history

    # Temporal reachable again: each request, retried with its key, runs.
    for method, path, body, key in requests:
        response = await api.request(method, path, json=body, headers=org.headers() | {"Idempotency-Key": key})
        assert response.status_code == 202, response.text
        if path.endswith("/register"):
            continue  # it waits for an agent; accepted is what the retry is owed
        record = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"])
        assert record["status"] == "SUCCEEDED", record


@pytest.mark.usefixtures("worker")
async def test_a_workflow_whose_operation_was_withdrawn_ends_without_touching_the_cloud(
    api: httpx.AsyncClient, settings: Settings, org: Org, pool: asyncpg.Pool, temporal_client: Client
) -> None:
    """The start timed out yet reached Temporal, and the API withdrew the operation: the
    workflow finds no record and ends at once."""
    deployed = await api.post("/v1/clusters", json=deploy_document("model"), headers=org.headers())
    assert deployed.status_code == 202, deployed.text
    model = await pool.fetchval(
        "SELECT workflow_input FROM operations WHERE id = $1", deployed.json()["data"]["operationId"]
    )
    await wait_for_operation(api, org.headers(), deployed.json()["data"]["operationId"])
    withdrawn_id, cluster_id = f"op_withdrawn{uuid.uuid4().hex[:12]}", f"cl_withdrawn{uuid.uuid4().hex[:12]}"
    workflow_input = model | {"operation_id": withdrawn_id, "cluster_id": cluster_id}
    calls_before = await pool.fetchval("SELECT count(*) FROM local_api_calls")
    outcome = await temporal_client.execute_workflow(
        "ClusterDeploy",
        workflow_input,
        id=withdrawn_id,
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )
    assert outcome["status"] == "NO_RECORD"
    assert await pool.fetchval("SELECT count(*) FROM local_api_calls WHERE cluster_id = $1", cluster_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM local_api_calls") == calls_before
    assert await pool.fetchval("SELECT count(*) FROM operations WHERE id = $1", withdrawn_id) == 0


# --- Temporal frozen: every call bounded -----------------------------------------------------


@pytest.fixture
async def frozen_stack(
    services: Services, tmp_path: Path, org: Org
) -> AsyncIterator[tuple[Settings, EmbeddedTemporal]]:
    temporal = EmbeddedTemporal(None, free_port(), None, log_file=tmp_path / "temporal.log")
    temporal.start()
    try:
        yield test_settings(services, temporal_address=temporal.address, temporal_call_timeout_seconds=2.0), temporal
    finally:
        if temporal.process is not None and temporal.process.poll() is None:
            os.kill(temporal.process.pid, signal.SIGCONT)
        temporal.stop()


async def test_with_temporal_frozen_cancel_and_approve_answer_503_within_the_bound(
    frozen_stack: tuple[Settings, EmbeddedTemporal], org: Org, pool: asyncpg.Pool
) -> None:
    settings, temporal = frozen_stack
    assert temporal.process is not None
    client = await Client.connect(temporal.address)
    async with build_worker(client, pool, settings), _serve(settings) as api:
        policy = await api.put(
            f"/v1/organizations/{org.id}/approval-policy", json={"clusterDeploy": True}, headers=org.headers()
        )
        assert policy.status_code == 200, policy.text
        waiting = await api.post("/v1/clusters", json=deploy_document("waits"), headers=org.headers())
        assert waiting.status_code == 202, waiting.text
        waiting_id, token = waiting.json()["data"]["operationId"], waiting.json()["data"].get("approvalToken")
        await wait_for_operation(api, org.headers(), waiting_id, until={"AWAITING_APPROVAL"})

        os.kill(temporal.process.pid, signal.SIGSTOP)
        try:
            bound = settings.temporal_call_timeout_seconds
            for path, body in (
                (f"/v1/operations/{waiting_id}/approval", {"action": "APPROVE", "token": token, "comment": "ok"}),
                (f"/v1/operations/{waiting_id}/cancel", None),
            ):
                started = time.monotonic()
                response = await api.post(path, json=body, headers=org.headers())
                elapsed = time.monotonic() - started
                _assert_503(response, "ORCHESTRATOR_UNAVAILABLE")
                assert elapsed < bound + 10, f"{path} took {elapsed:.1f}s"
        finally:
            os.kill(temporal.process.pid, signal.SIGCONT)
        status = await pool.fetchval("SELECT status FROM operations WHERE id = $1", waiting_id)
        assert status == "AWAITING_APPROVAL"  # neither the refused approval nor the cancel took
