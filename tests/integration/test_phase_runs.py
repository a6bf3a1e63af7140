"""A phase's attempts are spent by the cloud, not by us (issue 20, item 6).

The worker is the real `clusterflow worker` process, killed with SIGKILL while a phase runs, or
left without its PostgreSQL (stopped for real): runs lost that way are re-checked without
spending the phase's attempts, while failures the cloud reports still end the deploy once the
attempts are spent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from clusterflow.devstack.postgres import EmbeddedPostgres, free_port
from clusterflow.records import local_cloud
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from tests.conftest import Org, Services, test_settings
from tests.helpers import all_events, deploy_document, wait_for_operation
from tests.processes import kill_hard, settings_env, spawn, stop


async def phase_runs(pool: asyncpg.Pool, operation_id: str, phase: str) -> int:
    """How many runs of `phase` have started (each writes one `phase` event when it starts)."""
    count = await pool.fetchval(
        "SELECT count(*) FROM operation_events WHERE operation_id = $1 AND phase = $2 AND kind = 'phase'"
        " AND event_key NOT LIKE '%/completed'",
        operation_id,
        phase,
    )
    return int(count)


async def wait_for_runs(pool: asyncpg.Pool, operation_id: str, phase: str, runs: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while await phase_runs(pool, operation_id, phase) < runs:
        status = await pool.fetchval("SELECT status FROM operations WHERE id = $1", operation_id)
        assert status in ("PENDING", "RUNNING"), f"the deploy ended {status} before run {runs} of {phase}"
        assert time.monotonic() < deadline, f"run {runs} of {phase} never started:\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.02)


def progress_moves_only_forward(events: list[dict[str, Any]]) -> bool:
    seen = [e["progressPercentage"] for e in events if e.get("progressPercentage") is not None]
    return seen == sorted(seen)


async def test_five_worker_kills_in_one_phase_do_not_spend_its_attempts(
    services: Services, org: Org, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from clusterflow.api.app import create_app

    # Three attempts; the cloud fails the first two. Under a retry policy that counted every
    # lost run, the first kill would have spent the last attempt.
    settings: Settings = test_settings(services, activity_heartbeat_timeout_seconds=2.0, activity_max_attempts=3)
    env = settings_env(settings)
    workers = [spawn("worker", env, tmp_path / "worker-0.log")]
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                doc = deploy_document("five-kills", phaseSeconds=3.0, failAt="VALIDATE", failTimes=2)
                accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
                operation_id = accepted["operationId"]
                for kill in range(5):
                    # Runs 1 and 2 fail in the cloud; run 3 and every re-check after it run the
                    # phase's body, which is where the worker dies.
                    await wait_for_runs(pool, operation_id, "VALIDATE", 3 + kill, tmp_path / f"worker-{kill}.log")
                    await asyncio.sleep(0.3)
                    kill_hard(workers[-1])
                    workers.append(spawn("worker", env, tmp_path / f"worker-{kill + 1}.log"))
                record = await wait_for_operation(api, org.headers(), operation_id, timeout=120)
                events = await all_events(api, org.headers(), operation_id)
    finally:
        for worker in workers:
            stop(worker)

    assert record["status"] == "SUCCEEDED", (record, (tmp_path / "worker-5.log").read_text()[-3000:])
    validate = [e["message"] for e in events if e["phase"] == "VALIDATE" and e["kind"] in ("phase", "log")]
    assert validate == [
        "VALIDATE started",
        "VALIDATE attempt 1 failed: simulated transient failure 1 of 2 at VALIDATE; will retry",
        "retrying VALIDATE (attempt 2 of 3)",
        "VALIDATE attempt 2 failed: simulated transient failure 2 of 2 at VALIDATE; will retry",
        "retrying VALIDATE (attempt 3 of 3)",
        *["re-checking VALIDATE after a worker restart"] * 5,
        "VALIDATE completed",
    ], validate
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert progress_moves_only_forward(events), [(e["message"], e["progressPercentage"]) for e in events]
    # What the rest of the deploy created, it created once.
    calls = await local_cloud.api_calls(pool, accepted["clusterId"])
    creates = Counter((c.kind, c.name) for c in calls if c.action == "create")
    assert creates and set(creates.values()) == {1}, creates


async def test_a_cloud_failure_still_fails_after_the_normal_attempts(
    services: Services, org: Org, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from clusterflow.api.app import create_app

    settings = test_settings(services, activity_max_attempts=3)
    worker = spawn("worker", settings_env(settings), tmp_path / "worker.log")
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                doc = deploy_document("always-failing", failAt="NETWORK", failTimes=50)
                accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
                record = await wait_for_operation(api, org.headers(), accepted["operationId"], timeout=60)
                events = await all_events(api, org.headers(), accepted["operationId"])
                cluster = (await api.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()
    finally:
        stop(worker)

    assert record["status"] == "FAILED", record
    assert record["error"]["code"] == "SIMULATED_FAILURE"
    assert record["error"]["retryable"] is True  # the condition may clear: worth enqueuing again
    failed = [e for e in events if e["phase"] == "NETWORK" and e["message"].startswith("NETWORK attempt")]
    assert [e["labels"]["attempt"] for e in failed] == ["1", "2", "3"]
    assert [e["level"] for e in failed] == ["WARN", "WARN", "ERROR"]
    assert not [e for e in events if e["message"].startswith("re-checking")]
    assert not [e for e in events if e["phase"] == "CONTROL_PLANE"]
    assert cluster["data"]["state"] == "FAILED"


async def test_a_database_outage_during_a_phase_spends_none_of_its_attempts(services: Services, tmp_path: Path) -> None:
    """The operation's PostgreSQL (a server of the test's own) stops for longer than the phase's
    whole retry budget: the runs that meet it are re-checked once it is back, and the deploy
    succeeds. Under a policy that counted them, the deploy ended FAILED."""
    from clusterflow.api.app import create_app

    postgres = EmbeddedPostgres(tmp_path / "pg" / "data", free_port())
    postgres.start()
    worker = None
    try:
        await migrate(postgres.dsn)
        conn = await asyncpg.connect(postgres.dsn)
        try:
            org_id = await create_organization(conn, "outage")
            _, key = await create_api_key(conn, org_id, "owner", "owner")
        finally:
            await conn.close()
        # Three attempts 0.1 s and 0.2 s apart: spent within a second of the outage.
        settings = test_settings(services, database_url=postgres.dsn, activity_max_attempts=3)
        worker = spawn("worker", settings_env(settings), tmp_path / "worker.log")
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                doc = deploy_document("outage", phaseSeconds=1.0)
                headers = {"Authorization": f"Bearer {key}"}
                accepted = (await api.post("/v1/clusters", json=doc, headers=headers)).json()["data"]
                operation_id = accepted["operationId"]
                conn = await asyncpg.connect(postgres.dsn)
                try:
                    deadline = time.monotonic() + 60
                    query = "SELECT current_phase FROM operations WHERE id = $1"
                    while await conn.fetchval(query, operation_id) != "CONTROL_PLANE":
                        assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                        await asyncio.sleep(0.02)
                finally:
                    await conn.close()
                await asyncio.to_thread(postgres.stop)
                await asyncio.sleep(6)
                await asyncio.to_thread(postgres.start)
                record = await wait_for_operation(api, headers, operation_id, timeout=120)
                events = await all_events(api, headers, operation_id)
    finally:
        if worker is not None:
            stop(worker)
        postgres.stop()

    assert record["status"] == "SUCCEEDED", (record, (tmp_path / "worker.log").read_text()[-3000:])
    messages = [e["message"] for e in events]
    assert "re-checking CONTROL_PLANE after the database was unavailable" in messages, messages
    assert not [m for m in messages if m.startswith("retrying")], messages
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
