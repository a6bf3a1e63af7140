"""The FastAPI app factory.

The lifespan opens the asyncpg pool, the Temporal client and the one LISTEN connection that
feeds this process's event streams (`api/streams.py`) once per process; routes get them
through dependencies. Tests build the app with their own settings and drive it in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from temporalio.client import Client

from clusterflow import __version__, startup_checks
from clusterflow.api import strict_requests
from clusterflow.api.audit_log import AuditMiddleware, AuditWriter
from clusterflow.api.dependency_faults import Dependency, Outages, quiet_background_loops
from clusterflow.api.errors import install_error_handlers
from clusterflow.api.middleware import ObservabilityMiddleware, RequestHygieneMiddleware, RequestIdMiddleware
from clusterflow.api.openapi_extras import document_common_answers
from clusterflow.api.orchestrator import BoundedCalls
from clusterflow.api.read_caches import ReadCaches, WriteFenceMiddleware
from clusterflow.api.routers import (
    agent,
    api_keys,
    audit,
    catalog,
    cloud_accounts,
    cluster_changes,
    clusters,
    federated_cloud_accounts,
    federated_credentials,
    health,
    metrics,
    notifications,
    oidc,
    operations,
    operator_control,
    organizations,
    progress_stream,
    registration,
    retention,
    update_runs,
    vault,
)
from clusterflow.api.schemas.clusters import ClusterMergePatch, ClusterSpec, K8sCluster, K8sClusterUpdate
from clusterflow.api.schemas.notifications import IntegrationInput, UnsubscribeRequest
from clusterflow.api.security import ApiGuards
from clusterflow.api.stream_docs import ASYNCAPI_PATH, asyncapi_document, document_streams
from clusterflow.api.streams import StreamHub
from clusterflow.console import console_app
from clusterflow.records.change_listener import API_KEY_CHANNEL, APPROVAL_POLICY_CHANNEL, EventListener
from clusterflow.records.db import create_pool, ping
from clusterflow.settings import Settings, get_settings
from clusterflow.temporal_connect import connect_options
from clusterflow.tracing import configure_tracing


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    startup_checks.enforce(settings, "api")  # exits, naming the setting, if unsafe beyond loopback

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        configure_tracing(settings, "api")
        app.state.pool = pool = await create_pool(
            settings.require_database_url(),
            settings.db_pool_min,
            settings.db_pool_max,
            acquire_timeout=settings.db_acquire_timeout_seconds,
        )
        # Lazy: the API starts (and serves reads) while Temporal is unreachable; /readyz says so,
        # and enqueues answer 503 until it is back.
        options = connect_options(settings)
        options["interceptors"] = [*options["interceptors"], BoundedCalls(settings.temporal_call_timeout_seconds)]
        app.state.temporal = temporal = await Client.connect(settings.require_temporal_address(), lazy=True, **options)
        app.state.outages = outages = Outages(
            {Dependency.DATABASE: lambda: ping(pool), Dependency.TEMPORAL: temporal.service_client.check_health}
        )
        unquiet = quiet_background_loops(outages)
        app.state.guards = ApiGuards(settings)
        await app.state.guards.start(app.state.pool)
        app.state.audit = AuditWriter(app.state.pool)
        app.state.audit.start()
        app.state.hub = hub = StreamHub()
        app.state.caches = caches = ReadCaches(
            settings.api_key_cache_seconds, settings.operation_cache_entries, lambda: listener.listening
        )

        def operation_changed(operation_id: str, sequence: int) -> None:
            caches.operation_changed(operation_id, sequence)
            hub.notify(operation_id, sequence)

        def resync() -> None:
            caches.resync()
            hub.resync()

        listener = EventListener(
            settings.require_database_url(),
            operation_changed,
            resync,
            others={
                API_KEY_CHANNEL: caches.api_key_changed,
                APPROVAL_POLICY_CHANNEL: caches.approval_policy_changed,
            },
        )
        await listener.start()
        app.state.listener = listener
        try:
            yield
        finally:
            unquiet()
            hub.close()
            await outages.close()
            await listener.stop()
            await app.state.guards.stop()
            await app.state.audit.stop()
            await app.state.pool.close()

    app = FastAPI(
        title="clusterflow",
        version=__version__,
        description="Control plane for Kubernetes cluster lifecycle. Every mutation is a durable "
        "operation: the API answers 202 with an operation ID; poll or stream its progress.",
        lifespan=lifespan,
        # Unknown query parameters (400) and body media types the route does not take (415).
        dependencies=[Depends(strict_requests.check)],
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Routes are matched in order: the one clients poll comes first.
    app.include_router(operations.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(clusters.router)
    app.include_router(cluster_changes.router)
    app.include_router(operator_control.router)
    app.include_router(organizations.router)
    app.include_router(retention.router)
    app.include_router(api_keys.router)
    app.include_router(audit.router)
    app.include_router(catalog.router)
    app.include_router(federated_cloud_accounts.router)
    app.include_router(federated_credentials.router)
    app.include_router(oidc.router)
    app.include_router(registration.router)
    app.include_router(agent.router)
    app.include_router(vault.router)
    app.include_router(cloud_accounts.router)
    app.include_router(progress_stream.router)
    app.include_router(notifications.router)
    app.include_router(update_runs.router)
    # A Mount, not API routes: absent from /openapi.json; the console's data comes from the API.
    app.mount("/console", console_app(), name="console")
    # Outermost last: the request ID exists before anything else runs, audit sees every answer.
    app.add_middleware(RequestHygieneMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(WriteFenceMiddleware)
    app.add_middleware(ObservabilityMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # Served like /openapi.json (a plain route, public): it describes the API, it holds no data.
    app.add_route(ASYNCAPI_PATH, _asyncapi, include_in_schema=False)
    return app


async def _asyncapi(_: Request) -> JSONResponse:
    """The WebSocket protocol, in AsyncAPI (`api/stream_docs.py`), next to /openapi.json."""
    return JSONResponse(asyncapi_document())


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document plus the schemas of bodies that routes parse by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    _, defs = models_json_schema(
        [
            (K8sCluster, "validation"),
            (ClusterSpec, "validation"),
            (K8sClusterUpdate, "validation"),
            (ClusterMergePatch, "validation"),
            (IntegrationInput, "validation"),
            (UnsubscribeRequest, "validation"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
    document_streams(schema)
    document_common_answers(schema)
    app.openapi_schema = schema
    return schema
