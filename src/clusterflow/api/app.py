"""The FastAPI app factory.

The lifespan opens the asyncpg pool and the Temporal client once per process; routes get them
through dependencies. Tests build the app with their own settings and drive it in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from temporalio.client import Client

from clusterflow import __version__
from clusterflow.api.errors import install_error_handlers
from clusterflow.api.middleware import ObservabilityMiddleware, RequestIdMiddleware
from clusterflow.api.routers import (
    cluster_changes,
    clusters,
    health,
    metrics,
    notifications,
    operations,
    operator_control,
)
from clusterflow.api.schemas.clusters import ClusterSpec, K8sCluster
from clusterflow.api.schemas.notifications import IntegrationInput, UnsubscribeRequest
from clusterflow.records.db import create_pool
from clusterflow.settings import Settings, get_settings
from clusterflow.temporal_connect import connect_options
from clusterflow.tracing import configure_tracing


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        configure_tracing(settings, "api")
        app.state.pool = await create_pool(settings.require_database_url(), settings.db_pool_min, settings.db_pool_max)
        # Lazy: the API starts (and serves reads) while Temporal is unreachable; /readyz says so,
        # and enqueues answer 503 until it is back.
        app.state.temporal = await Client.connect(
            settings.require_temporal_address(), lazy=True, **connect_options(settings)
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(
        title="clusterflow",
        version=__version__,
        description="Control plane for Kubernetes cluster lifecycle. Every mutation is a durable "
        "operation: the API answers 202 with an operation ID; poll or stream its progress.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(clusters.router)
    app.include_router(cluster_changes.router)
    app.include_router(operator_control.router)
    app.include_router(operations.router)
    app.include_router(notifications.router)
    app.add_middleware(ObservabilityMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document plus the schemas of bodies that routes parse by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    _, defs = models_json_schema(
        [
            (K8sCluster, "validation"),
            (ClusterSpec, "validation"),
            (IntegrationInput, "validation"),
            (UnsubscribeRequest, "validation"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
    app.openapi_schema = schema
    return schema
