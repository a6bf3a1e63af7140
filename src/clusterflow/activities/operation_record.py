"""Activities that write the operation record: begin, append an event, finish.

Each is idempotent: `begin` and `finish` are guarded status transitions and events carry
deterministic keys, so Temporal retrying one after a lost response changes nothing twice.

A database that is away (connection lost, restarting, out of connections, a lock or
serialization conflict) is worth retrying; one that refuses what was sent (a constraint, bad
data, a missing table) will refuse it again. Those are raised as non-retryable
RECORD_WRITE_FAILED, which the workflow turns into the operation ending FAILED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.contracts.operations import (
    TERMINAL_STATUSES,
    BeginInput,
    BeginResult,
    CancelRequest,
    ClusterChange,
    DecisionRecord,
    ErrorCode,
    EventInput,
    FinishInput,
    OperationStatus,
    WaitForOperations,
)
from clusterflow.records import clusters, decisions, operations
from clusterflow.records.db import DbPool
from clusterflow.records.errors import DatabaseError

# SQLSTATE classes of errors that may clear: connection exceptions, transaction rollbacks
# (serialization failures, deadlocks), insufficient resources, objects in use or locked,
# operator intervention (shutdown, statement timeout) and system errors.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


def refused_for_good(err: BaseException) -> bool:
    """Whether PostgreSQL refused a statement in a way retrying cannot change."""
    if not isinstance(err, DatabaseError):
        return False
    sqlstate = str(getattr(err, "sqlstate", None) or "")
    return bool(sqlstate) and sqlstate[:2] not in _TRANSIENT_SQLSTATE_CLASSES


@contextmanager
def permanent_failures_not_retried() -> Iterator[None]:
    try:
        yield
    except DatabaseError as err:
        if not refused_for_good(err):
            raise
        raise ApplicationError(
            f"the database refused the write ({getattr(err, 'sqlstate', '')}): {err}",
            type=ErrorCode.RECORD_WRITE_FAILED,
            non_retryable=True,
        ) from err


NO_RECORD = "NO_RECORD"
"""`begin`'s status for an operation whose record is gone: its enqueue was refused and undone."""


class RecordActivities:
    def __init__(self, pool: DbPool) -> None:
        self.pool = pool

    @activity.defn(name="records.begin_operation")
    async def begin_operation(self, inp: BeginInput) -> BeginResult:
        with permanent_failures_not_retried():
            async with self.pool.acquire() as conn:
                status = await operations.begin(conn, inp.operation_id, inp.awaiting_approval)
        if status is None:
            # The API refused the enqueue and deleted the operation (its start call timed out, yet
            # reached Temporal): the workflow ends at once, having touched nothing.
            activity.logger.info("operation %s has no record: it was withdrawn before it started", inp.operation_id)
            return BeginResult(proceed=False, status=NO_RECORD)
        return BeginResult(proceed=status == OperationStatus.RUNNING, status=status)

    @activity.defn(name="records.record_decision")
    async def record_decision(self, inp: DecisionRecord) -> str | None:
        with permanent_failures_not_retried():
            async with self.pool.acquire() as conn:
                return await decisions.record_decision(
                    conn, inp.operation_id, inp.decision, inp.decided_by, inp.comment
                )

    @activity.defn(name="records.update_cluster")
    async def update_cluster(self, inp: ClusterChange) -> None:
        with permanent_failures_not_retried():
            async with self.pool.acquire() as conn:
                await clusters.set_state(conn, inp.cluster_id, inp.state, inp.fields)

    @activity.defn(name="records.request_cancel")
    async def request_cancel(self, inp: CancelRequest) -> str | None:
        with permanent_failures_not_retried():
            async with self.pool.acquire() as conn:
                return await operations.request_cancel(conn, inp.operation_id, inp.requested_by, forced=False)

    @activity.defn(name="records.wait_for_operations")
    async def wait_for_operations(self, inp: WaitForOperations) -> None:
        """Heartbeating poll of the records until every operation is terminal."""
        while True:
            statuses = [await operations.status_of(self.pool, op) for op in inp.operation_ids]
            if all(s is None or s in TERMINAL_STATUSES for s in statuses):
                return
            activity.heartbeat(statuses)
            await asyncio.sleep(0.5)

    @activity.defn(name="records.append_event")
    async def append_event(self, inp: EventInput) -> int:
        with permanent_failures_not_retried():
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
        with permanent_failures_not_retried():
            async with self.pool.acquire() as conn, conn.transaction():
                changed = await operations.finish(
                    conn,
                    inp.operation_id,
                    inp.status,
                    inp.message,
                    error=asdict(inp.error) if inp.error else None,
                    result=inp.result,
                    metadata=inp.metadata,
                )
                if changed and inp.cluster_state:
                    cluster_id = await operations.cluster_of(conn, inp.operation_id)
                    if cluster_id:
                        await clusters.set_state(conn, cluster_id, inp.cluster_state, inp.cluster_fields)
                return changed
