"""A phase's events reach the record in order and promptly, though they are written in batches:
before any wait, within a tenth of a second otherwise, and when the phase ends; and they never
contradict each other, even when the worker dies between a phase's last event and its end."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from clusterflow.activities.providers.phases import FLUSH_AFTER_SECONDS, PhaseReporter, ProviderError, run_phase
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import operations
from tests.conftest import Org, Services, test_settings
from tests.helpers import all_events, deploy_document, wait_for_operation
from tests.processes import kill_hard, settings_env, spawn, stop


async def new_operation(pool: asyncpg.Pool, org: Org) -> str:
    op = new_operation_id()
    await operations.insert(
        pool,
        operation_id=op,
        organization_id=org.id,
        cluster_id=None,
        cluster_name=None,
        operation_type="CLUSTER_DEPLOY",
        requested_by="key_test",
        idempotency_key=None,
        workflow_type="ClusterDeploy",
        workflow_input={},
    )
    return op


def phase_input(op: str) -> PhaseInput:
    return PhaseInput(op, "cl_test", "test", "local", "local-1", "NETWORK", {}, 0, 50)


async def messages(pool: asyncpg.Pool, op: str) -> list[str]:
    rows = await pool.fetch("SELECT message FROM operation_events WHERE operation_id = $1 ORDER BY sequence", op)
    return [r["message"] for r in rows]


async def test_events_are_written_before_a_wait_and_soon_without_one(pool: asyncpg.Pool, org: Org) -> None:
    op = await new_operation(pool, org)

    async def phase() -> None:
        reporter = PhaseReporter(pool, phase_input(op))
        await reporter.event("one", "one")
        await reporter.event("two", "two")
        assert await messages(pool, op) == []  # batched
        await asyncio.sleep(FLUSH_AFTER_SECONDS * 3)  # a long step that does not heartbeat
        assert await messages(pool, op) == ["one", "two"]
        await reporter.event("three", "three")
        await reporter.heartbeat_while(0.01, "waiting")
        assert await messages(pool, op) == ["one", "two", "three"]  # written before the wait

    await ActivityEnvironment().run(phase)


async def test_a_phase_leaves_every_event_written_however_it_ends(pool: asyncpg.Pool, org: Org) -> None:
    done, failed, cancelled = [await new_operation(pool, org) for _ in range(3)]

    async def ok(reporter: PhaseReporter) -> PhaseResult:
        await reporter.event("made", "made a thing")
        return PhaseResult(phase="NETWORK")

    async def broken(reporter: PhaseReporter) -> PhaseResult:
        await reporter.event("made", "made a thing")
        raise RuntimeError("unclassified")

    async def interrupted(reporter: PhaseReporter) -> PhaseResult:
        await reporter.event("made", "made a thing")
        raise asyncio.CancelledError

    env = ActivityEnvironment()
    await env.run(run_phase, pool, phase_input(done), ok)
    assert await messages(pool, done) == ["NETWORK started", "made a thing", "NETWORK completed"]
    for op, body, error in ((failed, broken, RuntimeError), (cancelled, interrupted, asyncio.CancelledError)):
        with pytest.raises(error):
            await env.run(run_phase, pool, phase_input(op), body)
        assert await messages(pool, op) == ["NETWORK started", "made a thing"]


async def test_a_worker_lost_after_a_phase_completed_re_checks_it_and_progress_never_falls(
    services: Services, org: Org, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The worker dies after CONTROL_PLANE's `completed` event is committed and before Temporal
    hears that the phase ended: the next run re-checks the phase, it does not retry it."""
    from clusterflow.api.app import create_app

    settings = test_settings(services, activity_heartbeat_timeout_seconds=2.0)
    env = settings_env(settings)
    first = spawn("worker", env, tmp_path / "worker-1.log")
    second = None
    lock_key = 200020  # an advisory lock the test holds while the worker commits `completed`
    app = create_app(settings)
    holder = await pool.acquire()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                await holder.execute("SELECT pg_advisory_lock($1)", lock_key)
                doc = deploy_document("lost-after-completed", phaseSeconds=0.5)
                accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
                operation_id = accepted["operationId"]
                assert operation_id.replace("_", "").isalnum()
                # Fires at COMMIT of the event's transaction and waits there for the test's lock.
                await holder.execute(
                    f"""CREATE FUNCTION hold_commit_{lock_key}() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN PERFORM pg_advisory_xact_lock({lock_key}); RETURN NULL; END $$;
                        CREATE CONSTRAINT TRIGGER hold_commit_{lock_key} AFTER INSERT ON operation_events
                        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                        WHEN (NEW.operation_id = '{operation_id}' AND NEW.event_key = 'CONTROL_PLANE/completed')
                        EXECUTE FUNCTION hold_commit_{lock_key}();"""
                )
                for _ in range(1500):
                    waiting = await pool.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted",
                        lock_key,
                    )
                    if waiting:
                        break
                    await asyncio.sleep(0.02)
                assert waiting, (tmp_path / "worker-1.log").read_text()[-3000:]
                os.killpg(first.pid, signal.SIGSTOP)  # it cannot read the commit's answer
                await holder.execute("SELECT pg_advisory_unlock($1)", lock_key)
                for _ in range(500):
                    if await pool.fetchval(
                        "SELECT count(*) FROM operation_events WHERE operation_id = $1"
                        " AND event_key = 'CONTROL_PLANE/completed'",
                        operation_id,
                    ):
                        break
                    await asyncio.sleep(0.01)
                kill_hard(first)  # `completed` is committed; Temporal never hears of it
                second = spawn("worker", env, tmp_path / "worker-2.log")
                record = await wait_for_operation(api, org.headers(), operation_id, timeout=90)
                events = await all_events(api, org.headers(), operation_id)
    finally:
        await holder.execute(
            f"DROP TRIGGER IF EXISTS hold_commit_{lock_key} ON operation_events;"
            f" DROP FUNCTION IF EXISTS hold_commit_{lock_key}(); SELECT pg_advisory_unlock_all();"
        )
        await pool.release(holder)
        stop(first)
        if second is not None:
            stop(second)

    assert record["status"] == "SUCCEEDED", record
    control_plane = [e["message"] for e in events if e["phase"] == "CONTROL_PLANE" and e["kind"] == "phase"]
    assert control_plane == [
        "CONTROL_PLANE started",
        "CONTROL_PLANE completed",
        "re-checking CONTROL_PLANE after a worker restart",
    ], control_plane
    assert not [e for e in events if e["message"].startswith("retrying")]
    progress = [e["progressPercentage"] for e in events if e["progressPercentage"] is not None]
    assert progress == sorted(progress), [(e["message"], e["progressPercentage"]) for e in events]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))


async def test_a_retried_phase_never_moves_the_event_log_s_progress_backwards(pool: asyncpg.Pool, org: Org) -> None:
    op = await new_operation(pool, org)

    async def halfway_then_fail(reporter: PhaseReporter) -> PhaseResult:
        if reporter.attempt == 1:
            await reporter.event("half", "half the subnets", fraction=0.5)
            raise ProviderError("CLOUD_BUSY", "busy", retryable=True)
        return PhaseResult(phase="NETWORK")

    env = ActivityEnvironment()
    first = replace(phase_input(op), attempt=1, max_attempts=3, run=1)
    with pytest.raises(ApplicationError):
        await env.run(run_phase, pool, first, halfway_then_fail)
    await env.run(run_phase, pool, replace(first, attempt=2, run=2), halfway_then_fail)
    rows = await pool.fetch(
        "SELECT message, progress_percentage FROM operation_events WHERE operation_id = $1 ORDER BY sequence", op
    )
    assert [(r["message"], r["progress_percentage"]) for r in rows] == [
        ("NETWORK started", 0),
        ("half the subnets", 25),
        ("NETWORK attempt 1 failed: busy; will retry", None),
        ("retrying NETWORK (attempt 2 of 3)", 25),  # starts again at 0, recorded at the highest
        ("NETWORK completed", 50),
    ]
