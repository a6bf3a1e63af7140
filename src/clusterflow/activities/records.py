"""Activities that write the operation record: begin, append an event, finish.

Each is idempotent: `begin` and `finish` are guarded status transitions and events carry
deterministic keys, so Temporal retrying one after a lost response changes nothing twice.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.records import clusters, operations
from clusterflow.workflows.contracts import (
    BeginInput,
    BeginResult,
    EventInput,
    FinishInput,
    OperationStatus,
)


class RecordActivities:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool

    @activity.defn(name="records.begin_operation")
    async def begin_operation(self, inp: BeginInput) -> BeginResult:
        async with self.pool.acquire() as conn:
            status = await operations.begin(conn, inp.operation_id)
        if status is None:
            raise ApplicationError(
                f"operation {inp.operation_id} has no record", type="UNKNOWN_OPERATION", non_retryable=True
            )
        return BeginResult(proceed=status == OperationStatus.RUNNING, status=status)

    @activity.defn(name="records.append_event")
    async def append_event(self, inp: EventInput) -> int:
        return await operations.append_event(
            self.pool,
            inp.operation_id,
            inp.event_key,
            inp.message,
            kind=inp.kind,
            level=inp.level,
            phase=inp.phase,
            progress_percentage=inp.progress_percentage,
            raw_output=inp.raw_output,
            labels=inp.labels,
        )

    @activity.defn(name="records.finish_operation")
    async def finish_operation(self, inp: FinishInput) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            changed = await operations.finish(
                conn,
                inp.operation_id,
                inp.status,
                inp.message,
                error=asdict(inp.error) if inp.error else None,
                result=inp.result,
            )
            if changed and inp.cluster_state:
                cluster_id = await conn.fetchval("SELECT cluster_id FROM operations WHERE id = $1", inp.operation_id)
                if cluster_id:
                    await clusters.set_state(conn, cluster_id, inp.cluster_state, inp.cluster_fields)
            return changed
