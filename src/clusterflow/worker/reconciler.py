"""Starts the workflows of operations whose start never happened, and ends the records of
operations whose workflow ended without saying so.

The API commits the operation row, then starts its workflow. If it dies in between, the row
stays PENDING with no workflow. Every worker runs this loop; rows are claimed with
`FOR UPDATE SKIP LOCKED`, and a start that finds the workflow already exists (the API's start
did happen, the record just had not been marked yet) only marks the row.

A workflow ends its record itself, retrying until the database takes the write; one the
database refused even as RECORD_WRITE_FAILED (or a workflow that failed or was terminated
before writing) leaves the record active with nothing left to finish it. The loop asks Temporal
about records idle for `abandoned_after_seconds` and ends those whose workflow is closed FAILED,
with the workflow's own error code (RECORD_WRITE_FAILED) or OPERATION_ABANDONED.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from clusterflow.contracts.operations import ClusterState, ErrorCode, OperationStatus
from clusterflow.records import clusters, operations
from clusterflow.records.db import DbPool, connection_broken
from clusterflow.records.errors import DatabaseError, database_unavailable
from clusterflow.workflows.registry import start_operation_workflow

log = logging.getLogger(__name__)


async def reconcile_once(
    pool: DbPool, client: Client, task_queue: str, grace_seconds: float, call_timeout: float = 5.0
) -> int:
    """One pass; returns how many workflows it started. Each start is bounded by `call_timeout`,
    since the claimed rows stay locked while it waits (an API withdrawing one answers 202)."""
    started = 0
    async with pool.acquire() as conn, conn.transaction():
        for row in await operations.unstarted(conn, grace_seconds):
            try:
                await asyncio.wait_for(
                    start_operation_workflow(
                        client,
                        task_queue,
                        row.id,
                        row.workflow_type,
                        row.workflow_input,
                        rpc_timeout=timedelta(seconds=call_timeout),
                    ),
                    call_timeout,
                )
                started += 1
                log.warning("reconciler started operation %s, whose workflow had never started", row.id)
            except WorkflowAlreadyStartedError:
                pass
            await operations.mark_workflow_started(conn, row.id)
    return started


async def _ended_with(client: Client, operation_id: str) -> tuple[str, str] | None:
    """(error code, reason) if the operation's workflow is closed; None while it runs or if
    Temporal does not know it."""
    handle = client.get_workflow_handle(operation_id)
    try:
        description = await handle.describe()
    except RPCError:
        return None
    status = description.status
    if status is None or status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
        return None
    code = ErrorCode.OPERATION_ABANDONED.value
    reason = f"its workflow ended {status.name} without recording the operation's end"
    if status == WorkflowExecutionStatus.FAILED:
        try:
            await handle.result(follow_runs=False)
        except WorkflowFailureError as failure:
            cause = failure.cause
            if isinstance(cause, ApplicationError) and cause.type:
                code = cause.type
            reason = f"its workflow failed without recording it: {cause}"
        except RPCError:
            return None
    return code, reason


async def repair_abandoned(
    pool: DbPool, client: Client, abandoned_after_seconds: float, after: operations.IdleCursor | None = None
) -> tuple[int, operations.IdleCursor | None]:
    """One pass over a page of idle operations after `after`; returns how many records it ended
    and where the next pass goes on (None: start again from the oldest)."""
    repaired = 0
    idle, cursor = await operations.idle_active(pool, abandoned_after_seconds, after=after)
    for operation_id in idle:
        ended = await _ended_with(client, operation_id)
        if ended is None:
            continue
        code, reason = ended
        message = f"operation marked FAILED by the reconciler: {reason}"
        error = {"code": code, "message": message, "retryable": False}
        try:  # the cluster FAILED too, unless its row is what refuses the write
            async with pool.acquire() as conn, conn.transaction():
                changed = await operations.finish(conn, operation_id, OperationStatus.FAILED, message, error=error)
                cluster_id = await operations.cluster_of(conn, operation_id) if changed else None
                if cluster_id:
                    await clusters.set_state(conn, cluster_id, ClusterState.FAILED, None)
        except DatabaseError:
            async with pool.acquire() as conn:
                changed = await operations.finish(conn, operation_id, OperationStatus.FAILED, message, error=error)
        if changed:
            repaired += 1
            log.warning("reconciler ended operation %s: %s", operation_id, reason)
    return repaired, cursor


async def run_reconciler(
    pool: DbPool,
    client: Client,
    task_queue: str,
    interval: float,
    grace_seconds: float,
    abandoned_after_seconds: float | None = None,
    call_timeout: float = 5.0,
) -> None:
    cursor: operations.IdleCursor | None = None
    outage = False  # a dependency down is one warning, not a traceback per pass
    while True:
        try:
            await reconcile_once(pool, client, task_queue, grace_seconds, call_timeout)
            if abandoned_after_seconds is not None:
                _, cursor = await repair_abandoned(pool, client, abandoned_after_seconds, cursor)
            if outage:
                log.warning("reconciler: PostgreSQL and Temporal answer again")
                outage = False
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if not (isinstance(err, RPCError) or database_unavailable(err) or connection_broken(err)):
                log.exception("reconciler pass failed")  # a fault of ours: every pass says so
            elif not outage:
                log.warning("reconciler: a dependency is unavailable (%s); retrying every %gs", err, interval)
                outage = True
        await asyncio.sleep(interval)
