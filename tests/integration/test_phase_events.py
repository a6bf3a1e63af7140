"""A phase's events reach the record in order and promptly, though they are written in batches:
before any wait, within a tenth of a second otherwise, and when the phase ends."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from clusterflow.activities.providers.phases import FLUSH_AFTER_SECONDS, PhaseReporter, run_phase
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import operations
from tests.conftest import Org


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
