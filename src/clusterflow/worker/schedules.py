"""Temporal schedules the workers keep in place: today, re-verifying connected AWS accounts.

A schedule (rather than a timer loop in some worker) runs once per interval whatever the
number of workers, survives restarts, and is visible and pausable in Temporal's UI. Every
worker ensures it at start-up; the first creates it, the others find it and update its
interval, so changing the setting and restarting workers applies it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from clusterflow.contracts.cloud_accounts import ReverifyInput
from clusterflow.settings import Settings

log = logging.getLogger(__name__)


def reverify_schedule_id(settings: Settings) -> str:
    return f"aws-reverify-accounts-{settings.task_queue}"


def _reverify_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "AwsReverifyAccounts",
            ReverifyInput(),
            id=f"{reverify_schedule_id(settings)}-run",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.aws_reverify_interval_seconds))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    schedule = _reverify_schedule(settings)
    try:
        await client.create_schedule(reverify_schedule_id(settings), schedule)
        log.info("created schedule %s", reverify_schedule_id(settings))
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(reverify_schedule_id(settings)).update(replace)
