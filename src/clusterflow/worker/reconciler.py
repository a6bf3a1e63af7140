"""Starts the workflows of operations whose start never happened.

The API commits the operation row, then starts its workflow. If it dies in between, the row
stays PENDING with no workflow. Every worker runs this loop; rows are claimed with
`FOR UPDATE SKIP LOCKED`, and a start that finds the workflow already exists (the API's start
did happen, the record just had not been marked yet) only marks the row.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from clusterflow.records import operations
from clusterflow.records.db import DbPool
from clusterflow.workflows.registry import start_operation_workflow

log = logging.getLogger(__name__)


async def reconcile_once(pool: DbPool, client: Client, task_queue: str, grace_seconds: float) -> int:
    """One pass; returns how many workflows it started."""
    started = 0
    async with pool.acquire() as conn, conn.transaction():
        for row in await operations.unstarted(conn, grace_seconds):
            try:
                await start_operation_workflow(client, task_queue, row.id, row.workflow_type, row.workflow_input)
                started += 1
                log.warning("reconciler started operation %s, whose workflow had never started", row.id)
            except WorkflowAlreadyStartedError:
                pass
            await operations.mark_workflow_started(conn, row.id)
    return started


async def run_reconciler(pool: DbPool, client: Client, task_queue: str, interval: float, grace_seconds: float) -> None:
    while True:
        try:
            await reconcile_once(pool, client, task_queue, grace_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # the next pass retries; one bad pass must not stop the loop
            log.exception("reconciler pass failed")
        await asyncio.sleep(interval)
