"""Builds and runs a worker: activity objects with injected clients, workflows, reconciler.

`build_worker` is what tests use too, so the suite runs the same registration as production.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from typing import Any

import asyncpg
from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from clusterflow.activities.notify import NotifyActivities
from clusterflow.activities.providers.local import LocalProvider
from clusterflow.activities.records import RecordActivities
from clusterflow.logs import configure_logging
from clusterflow.records.db import create_pool
from clusterflow.settings import Settings, get_settings
from clusterflow.temporal_connect import connect_options
from clusterflow.tracing import configure_tracing, temporal_interceptors
from clusterflow.worker.notifications import run_dispatcher
from clusterflow.worker.observability import MetricsInterceptor
from clusterflow.worker.reconciler import run_reconciler
from clusterflow.workflows.registry import ALL_WORKFLOWS

log = logging.getLogger(__name__)


def activities_for(pool: asyncpg.Pool[Any], settings: Settings) -> list[Any]:
    records = RecordActivities(pool)
    local = LocalProvider(pool, settings.local_phase_seconds)
    notify = NotifyActivities(pool, settings)
    return [
        records.begin_operation,
        records.append_event,
        records.finish_operation,
        records.record_decision,
        records.update_cluster,
        records.request_cancel,
        records.wait_for_operations,
        local.deploy_phase,
        local.delete_phase,
        local.update_phase,
        notify.targets,
        notify.deliver,
    ]


def build_worker(client: Client, pool: asyncpg.Pool[Any], settings: Settings, task_queue: str | None = None) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=ALL_WORKFLOWS,
        activities=activities_for(pool, settings),
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        # On SIGTERM, in-flight activities get this long to finish before they are cancelled.
        graceful_shutdown_timeout=timedelta(seconds=20),
        interceptors=[MetricsInterceptor(), *temporal_interceptors(settings)],
    )


async def connect_temporal(settings: Settings) -> Client:
    options = connect_options(settings)
    # The worker gets the tracing interceptor itself (build_worker); on the client too it would run twice.
    options["interceptors"] = []
    if settings.temporal_sdk_metrics_port:
        # The SDK's own metrics: schedule-to-start latency says when to add workers.
        telemetry = TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"0.0.0.0:{settings.temporal_sdk_metrics_port}")
        )
        options["runtime"] = Runtime(telemetry=telemetry)
    return await Client.connect(settings.require_temporal_address(), **options)


async def run(settings: Settings) -> None:
    configure_tracing(settings, "worker")
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port)
        except OSError as err:  # a worker without metrics still does its work
            log.error("metrics endpoint not started on port %s: %s", settings.metrics_port, err)
    pool = await create_pool(settings.require_database_url(), settings.db_pool_min, settings.db_pool_max)
    client = await connect_temporal(settings)
    worker = build_worker(client, pool, settings)
    reconciler = asyncio.create_task(
        run_reconciler(
            pool, client, settings.task_queue, settings.reconcile_interval_seconds, settings.reconcile_grace_seconds
        )
    )
    dispatcher = asyncio.create_task(run_dispatcher(pool, client, settings, settings.task_queue))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
        log.info("worker stopping: finishing in-flight activities")
    reconciler.cancel()
    dispatcher.cancel()
    await pool.close()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
