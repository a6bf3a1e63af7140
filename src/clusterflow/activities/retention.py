"""The retention activities: one per kind of history, each walking every organization.

Each activity takes organizations in ID order and, for each, runs batches (`records/retention.py`,
one short transaction each) until a batch comes back short. It heartbeats after every batch
with the last organization it finished, so a retry after a lost worker resumes there instead
of starting over, and a cancel reaches it within a batch. A run stops at its time budget and
says so (`complete=False`); the next scheduled run continues, since nothing it skipped has
become any younger.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from temporalio import activity

from clusterflow.contracts.retention import HistoryKind, RetentionDays, RetireInput, RetireResult
from clusterflow.records import retention
from clusterflow.records.db import DbPool
from clusterflow.records.retention import Retired
from clusterflow.settings import Settings

RUN_BUDGET_SECONDS = 20 * 60.0
"""Work per activity run; the workflow gives it more time than this before Temporal times out."""

_Batch = Callable[[str, int], Awaitable[Retired]]


def defaults(settings: Settings) -> RetentionDays:
    return RetentionDays(
        events=settings.retention_events_days,
        audit=settings.retention_audit_days,
        deliveries=settings.notification_retention_days,
        operations=settings.retention_operations_days,
    )


class RetentionActivities:
    def __init__(self, pool: DbPool, settings: Settings, budget_seconds: float = RUN_BUDGET_SECONDS) -> None:
        self.pool = pool
        self.settings = settings
        self.budget_seconds = budget_seconds

    def _batch(self, kind: HistoryKind) -> _Batch:
        limit = self.settings.retention_batch_size
        pool = self.pool

        async def events(org: str, days: int) -> Retired:
            async with pool.acquire() as conn:
                return await retention.retire_event_logs(conn, org, days, limit)

        async def audit(org: str, days: int) -> Retired:
            return await retention.retire_audit(pool, org, days, limit)

        async def deliveries(org: str, days: int) -> Retired:
            return await retention.retire_deliveries(pool, org, days, limit)

        async def operations(org: str, days: int) -> Retired:
            async with pool.acquire() as conn:
                return await retention.retire_operations(conn, org, days, limit)

        return {
            HistoryKind.EVENTS: events,
            HistoryKind.AUDIT: audit,
            HistoryKind.DELIVERIES: deliveries,
            HistoryKind.OPERATIONS: operations,
        }[kind]

    async def _retire(self, kind: HistoryKind) -> RetireResult:
        batch = self._batch(kind)
        limit = self.settings.retention_batch_size
        details = activity.info().heartbeat_details
        after: str | None = str(details[0]) if details and details[0] else None
        started = time.monotonic()
        rows = operations = batches = 0
        while True:
            page = await retention.organizations(self.pool, defaults(self.settings), after_id=after)
            if not page:
                break
            for org in page:
                days = org.days.of(kind)
                while True:
                    retired = await batch(org.organization_id, days)
                    rows, operations, batches = rows + retired.rows, operations + retired.operations, batches + 1
                    activity.heartbeat(after)
                    if not retired.more:
                        break
                    if time.monotonic() - started > self.budget_seconds:
                        return RetireResult(kind, rows, operations, batches, complete=False)
                after = org.organization_id
                activity.heartbeat(after)
        if kind is HistoryKind.AUDIT:  # rows no organization owns (refused keys) age by the default
            while True:
                retired = await retention.retire_audit(self.pool, None, self.settings.retention_audit_days, limit)
                rows, batches = rows + retired.rows, batches + 1
                activity.heartbeat(after)
                if not retired.more:
                    break
        activity.logger.info("retention retired %s rows of %s in %s batches", rows, kind.value, batches)
        return RetireResult(kind, rows, operations, batches)

    @activity.defn(name="retention.retire_events")
    async def retire_events(self, inp: RetireInput) -> RetireResult:
        return await self._retire(HistoryKind.EVENTS)

    @activity.defn(name="retention.retire_audit")
    async def retire_audit(self, inp: RetireInput) -> RetireResult:
        return await self._retire(HistoryKind.AUDIT)

    @activity.defn(name="retention.retire_deliveries")
    async def retire_deliveries(self, inp: RetireInput) -> RetireResult:
        return await self._retire(HistoryKind.DELIVERIES)

    @activity.defn(name="retention.retire_operations")
    async def retire_operations(self, inp: RetireInput) -> RetireResult:
        return await self._retire(HistoryKind.OPERATIONS)
