"""The API's audit writer: every event reaches the table, in batches, through outages and
past an event the database refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from clusterflow.api.audit_log import AuditWriter
from clusterflow.records.audit import AuditEvent
from tests.conftest import Org


def event(org: str, request_id: str, details: dict[str, Any] | None = None) -> AuditEvent:
    return AuditEvent(
        organization_id=org,
        event_type="CLUSTER",
        action="CREATE",
        resource="/v1/clusters",
        resource_id=None,
        actor="key_test",
        actor_role="owner",
        request_id=request_id,
        ip_address="127.0.0.1",
        user_agent="test",
        success=True,
        status_code=202,
        details=details or {},
    )


async def written(pool: asyncpg.Pool, org: str) -> list[str]:
    rows = await pool.fetch("SELECT request_id FROM audit_events WHERE organization_id = $1", org)
    return sorted(r["request_id"] for r in rows)


async def test_queued_events_are_all_written_and_flush_waits_for_them(pool: asyncpg.Pool, org: Org) -> None:
    org_id = org.id
    writer = AuditWriter(pool, batch=7)
    writer.start()
    try:
        for i in range(50):
            writer.submit(event(org_id, f"req_{i:03}"))
        await asyncio.wait_for(writer.flush(), 10)
        assert await written(pool, org_id) == [f"req_{i:03}" for i in range(50)]
    finally:
        await writer.stop()


async def test_an_event_the_database_refuses_does_not_hold_back_the_others(pool: asyncpg.Pool, org: Org) -> None:
    org_id = org.id
    writer = AuditWriter(pool)
    writer.start()
    try:
        writer.submit(event(org_id, "req_before"))
        writer.submit(event(org_id, "req_refused", {"text": "\u0000"}))  # jsonb cannot hold NUL
        writer.submit(event(org_id, "req_after"))
        await asyncio.wait_for(writer.flush(), 10)
        assert await written(pool, org_id) == ["req_after", "req_before"]
    finally:
        await writer.stop()


class UnreachableFor:
    """A pool whose first `failures` writes fail as a dropped connection does."""

    def __init__(self, pool: asyncpg.Pool, failures: int) -> None:
        self.pool, self.failures = pool, failures

    async def executemany(self, *args: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        await self.pool.executemany(*args)


async def test_events_wait_out_an_outage_and_the_oldest_go_past_the_limit(pool: asyncpg.Pool, org: Org) -> None:
    org_id = org.id
    flaky = UnreachableFor(pool, failures=3)
    writer = AuditWriter(flaky, max_pending=5)  # type: ignore[arg-type]
    writer.start()
    try:
        for i in range(8):
            writer.submit(event(org_id, f"req_{i}"))
        await asyncio.wait_for(writer.flush(), 20)
        assert flaky.failures == 0
        # Eight submitted, at most five held: the three oldest were dropped, the rest written.
        assert await written(pool, org_id) == [f"req_{i}" for i in range(3, 8)]
    finally:
        await writer.stop()
