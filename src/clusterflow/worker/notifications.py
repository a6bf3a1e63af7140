"""Drains the notification outbox: one `NotificationDispatch` workflow per event.

Every worker runs this loop beside the reconciler. Events are claimed with
`FOR UPDATE SKIP LOCKED` and marked dispatched in the same transaction that started their
workflows, so concurrent workers split the work; if Temporal is down the transaction rolls back
and the next pass tries again. The workflow ID is `notify-<event id>` and a used ID is refused,
so an event that was started but not marked (a crash between the two) is not delivered twice.
Now and then a pass also deletes events (and their delivery log) past the retention period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from clusterflow.contracts.notifications import DispatchInput
from clusterflow.records import notifications
from clusterflow.records.db import DbPool
from clusterflow.settings import Settings
from clusterflow.workflows.notification_dispatch import NotificationDispatchWorkflow

log = logging.getLogger(__name__)


def dispatch_input(settings: Settings, event_id: str) -> DispatchInput:
    return DispatchInput(
        event_id=event_id,
        max_attempts=settings.notification_max_attempts,
        retry_initial_seconds=settings.notification_retry_initial_seconds,
        retry_max_seconds=settings.notification_retry_max_seconds,
        timeout_seconds=max(30.0, settings.notification_http_timeout_seconds * 2),
    )


async def dispatch_once(pool: DbPool, client: Client, settings: Settings, task_queue: str) -> int:
    """One pass; returns how many events it dispatched."""
    async with pool.acquire() as conn, conn.transaction():
        event_ids = await notifications.claim_pending(conn)
        for event_id in event_ids:
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await client.start_workflow(
                    NotificationDispatchWorkflow.run,
                    dispatch_input(settings, event_id),
                    id=f"notify-{event_id}",
                    task_queue=task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                )
        if event_ids:
            await notifications.mark_dispatched(conn, event_ids)
    return len(event_ids)


async def run_dispatcher(pool: DbPool, client: Client, settings: Settings, task_queue: str) -> None:
    # Old events and their delivery log are retired by the HistoryRetention schedule.
    while True:
        try:
            await dispatch_once(pool, client, settings, task_queue)
        except asyncio.CancelledError:
            raise
        except Exception:  # the next pass retries; one bad pass must not stop the loop
            log.exception("notification dispatch pass failed")
        await asyncio.sleep(settings.notification_dispatch_interval_seconds)
