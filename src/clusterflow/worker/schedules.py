"""Temporal schedules the workers keep in place: re-verifying connected cloud accounts (AWS
roles, GCP and Azure federations; the schedule and its workflow keep their first, AWS-only,
names), and refreshing the enabled clouds' catalogs (`CatalogRefresh`).

A schedule (rather than a timer loop in some worker) runs once per interval whatever the
number of workers, survives restarts, and is visible and pausable in Temporal's UI. Every
worker ensures it at start-up; the first creates it, the others find it and update its
interval, so changing the setting and restarting workers applies it.
"""

from __future__ import annotations

import contextlib
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
from temporalio.service import RPCError

from clusterflow.catalog.refresh import REFRESH_WORKFLOW, REFRESHABLE, CatalogRefreshInput
from clusterflow.contracts.cloud_accounts import ReverifyInput
from clusterflow.contracts.retention import RETENTION_WORKFLOW, RetentionInput
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


def catalog_schedule_id(settings: Settings) -> str:
    return f"catalog-refresh-{settings.task_queue}"


def _catalog_schedule(settings: Settings) -> Schedule:
    providers = tuple(p for p in settings.enabled_providers if p in REFRESHABLE)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            REFRESH_WORKFLOW,
            CatalogRefreshInput(providers=providers),
            id=f"{catalog_schedule_id(settings)}-run",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.catalog_refresh_interval_seconds))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def retention_schedule_id(settings: Settings) -> str:
    return f"history-retention-{settings.task_queue}"


def _retention_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RETENTION_WORKFLOW,
            RetentionInput(),
            id=f"{retention_schedule_id(settings)}-run",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.retention_interval_seconds))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def _ensure(client: Client, schedule_id: str, schedule: Schedule, *, run_when_created: bool = False) -> None:
    try:
        await client.create_schedule(schedule_id, schedule, trigger_immediately=run_when_created)
        log.info("created schedule %s", schedule_id)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)


async def ensure_schedules(client: Client, settings: Settings) -> None:
    await _ensure(client, reverify_schedule_id(settings), _reverify_schedule(settings))
    await _ensure(client, retention_schedule_id(settings), _retention_schedule(settings))
    if any(p in REFRESHABLE for p in settings.enabled_providers):
        # A new installation reads its clouds' catalogs at once rather than serving the snapshot
        # for a whole interval; the test suite turns that off, since every test that ensures the
        # schedules would then rewrite the one stored catalog the other tests read.
        await _ensure(
            client,
            catalog_schedule_id(settings),
            _catalog_schedule(settings),
            run_when_created=settings.catalog_refresh_when_created,
        )
    else:  # only the local simulator: nothing to refresh (any earlier schedule goes)
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(catalog_schedule_id(settings)).delete()
