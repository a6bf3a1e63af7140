"""Builds and runs a worker: activity objects with injected clients, workflows, reconciler.

`build_worker` is what tests use too, so the suite runs the same registration as production.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from typing import Any

import uvloop
from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from clusterflow import startup_checks
from clusterflow.activities.agent import AgentActivities, run_agent_monitor
from clusterflow.activities.catalog_refresh import CatalogRefreshActivities
from clusterflow.activities.federated_connect import FederatedConnectActivities
from clusterflow.activities.notification_delivery import NotifyActivities
from clusterflow.activities.operation_record import RecordActivities
from clusterflow.activities.providers.adapter import phase_activities
from clusterflow.activities.providers.aws import (
    AwsClients,
    AwsCloudConnect,
    AwsKubeconfigActivities,
    AwsProvider,
    SessionFactory,
    default_session_factory,
)
from clusterflow.activities.providers.azure import (
    AzureConnectCheck,
    AzureCredentialActivities,
    AzureKubeconfigActivities,
    AzureProvider,
)
from clusterflow.activities.providers.gcp import (
    GcpConnectCheck,
    GcpCredentialActivities,
    GcpKubeconfigActivities,
    GcpProvider,
)
from clusterflow.activities.providers.local import LocalProvider
from clusterflow.activities.retention import RetentionActivities
from clusterflow.activities.update_runs import UpdateRunActivities
from clusterflow.logs import configure_logging
from clusterflow.records.db import DbPool, create_pool
from clusterflow.settings import Settings, get_settings
from clusterflow.temporal_connect import connect_options
from clusterflow.tracing import configure_tracing, temporal_interceptors
from clusterflow.worker.notifications import run_dispatcher
from clusterflow.worker.observability import MetricsInterceptor
from clusterflow.worker.reconciler import run_reconciler
from clusterflow.worker.schedules import ensure_schedules
from clusterflow.workflows.registry import ALL_WORKFLOWS

log = logging.getLogger(__name__)


def activities_for(pool: DbPool, settings: Settings, aws_sessions: SessionFactory | None = None) -> list[Any]:
    """Every activity, whichever providers are enabled: the API refuses requests for disabled
    providers, and a worker that can run everything lets deployments enable a provider by
    changing the API's settings alone. Cloud clients are built lazily, per call."""
    records = RecordActivities(pool)
    local = LocalProvider(pool, settings.local_phase_seconds)
    aws_clients = AwsClients(aws_sessions or default_session_factory, settings.aws_endpoint_url, settings.aws_region)
    aws = AwsProvider(pool, aws_clients, poll_seconds=settings.aws_poll_seconds, addons=settings.aws_eks_addons)
    connect = AwsCloudConnect(
        pool,
        aws_clients,
        bucket=settings.aws_connect_bucket,
        url_seconds=settings.aws_connect_url_seconds,
        credentials_max_seconds=settings.aws_credentials_max_seconds,
    )
    agent = AgentActivities(pool)
    # Cloud clients are built lazily on first use, so a worker without cloud credentials still
    # starts (and serves the providers it can).
    gcp = GcpProvider(pool, settings)
    azure = AzureProvider(pool, settings)
    federated = FederatedConnectActivities(pool, settings)
    gcp_connect = GcpConnectCheck(pool, settings)
    azure_connect = AzureConnectCheck(pool, settings)
    notify = NotifyActivities(pool, settings)
    gcp_credentials = GcpCredentialActivities(pool, settings)
    azure_credentials = AzureCredentialActivities(pool, settings)
    aws_kubeconfig = AwsKubeconfigActivities(pool, aws)
    gcp_kubeconfig = GcpKubeconfigActivities(pool, settings, gcp)
    azure_kubeconfig = AzureKubeconfigActivities(pool, settings, azure)
    catalog_refresh = CatalogRefreshActivities(pool, settings, aws_clients)
    retention = RetentionActivities(pool, settings)
    runs = UpdateRunActivities(pool)
    return [
        records.begin_operation,
        records.append_event,
        records.finish_operation,
        records.record_decision,
        records.update_cluster,
        records.request_cancel,
        records.wait_for_operations,
        # `<cloud>.deploy_phase`, `<cloud>.update_phase`, `<cloud>.delete_phase` of each provider.
        *phase_activities("local", pool, local),
        *phase_activities("aws", pool, aws),
        *phase_activities("gcp", pool, gcp),
        *phase_activities("azure", pool, azure),
        connect.prepare_connect,
        connect.check_connect,
        connect.mark_cloud_account,
        connect.reverify_accounts,
        connect.issue_credentials,
        agent.connection_state,
        agent.remove_agent,
        agent.rotate_credential,
        agent.await_kubeconfig,
        agent.withdraw,
        federated.set_status,
        federated.reverify_accounts,
        gcp_connect.check_gcp,
        azure_connect.check_azure,
        notify.targets,
        notify.deliver,
        gcp_credentials.issue_gcp,
        azure_credentials.issue_azure,
        aws_kubeconfig.issue_aws,
        gcp_kubeconfig.issue_gcp,
        azure_kubeconfig.issue_azure,
        catalog_refresh.refresh_provider,
        retention.retire_events,
        retention.retire_audit,
        retention.retire_deliveries,
        retention.retire_operations,
        runs.open_child,
        runs.save_snapshot,
        runs.close_children,
        runs.window_opening,
    ]


def build_worker(
    client: Client,
    pool: DbPool,
    settings: Settings,
    task_queue: str | None = None,
    aws_sessions: SessionFactory | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=ALL_WORKFLOWS,
        activities=activities_for(pool, settings, aws_sessions),
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_cached_workflows=settings.worker_max_cached_workflows,
        # Our own modules are deterministic (workflows/ imports no I/O: import-linter enforces
        # it), so the sandbox shares them instead of re-importing them for every workflow run:
        # less CPU per start and less memory per cached workflow (`make bench`, README).
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("clusterflow")
        ),
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
    await ensure_schedules(client, settings)
    reconciler = asyncio.create_task(
        run_reconciler(
            pool,
            client,
            settings.task_queue,
            settings.reconcile_interval_seconds,
            settings.reconcile_grace_seconds,
            settings.reconcile_abandoned_after_seconds,
            settings.temporal_call_timeout_seconds,
        )
    )
    monitor = asyncio.create_task(
        run_agent_monitor(pool, settings.agent_disconnect_after_seconds, settings.agent_monitor_interval_seconds)
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
    monitor.cancel()
    dispatcher.cancel()
    await pool.close()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    startup_checks.enforce(settings, "worker")  # exits, naming the setting, if unsafe beyond loopback
    # uvloop rather than asyncio's selector loop: the activities' database traffic and the SDK's
    # cross-thread wake-ups took about a quarter of the worker's CPU on the latter (`make bench`).
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
