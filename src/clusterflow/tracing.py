"""OpenTelemetry tracing across the API, Temporal and activities; off unless configured.

With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each process installs an SDK tracer provider that
batches spans to that OTLP/HTTP endpoint. The API middleware opens a server span per request
(continuing a caller's W3C `traceparent`); Temporal's `TracingInterceptor`, on the API's client
and on the worker, carries the context through workflow start, workflow run and each activity,
so one trace follows a request into its workflow and activities, across processes. Without the
setting nothing is installed: spans are the API's no-op ones, and no interceptor runs.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from clusterflow.settings import Settings

log = logging.getLogger(__name__)


def tracing_enabled(settings: Settings) -> bool:
    return bool(settings.otel_exporter_otlp_endpoint)


def configure_tracing(settings: Settings, component: str, exporter: SpanExporter | None = None) -> bool:
    """Install the tracer provider once per process; returns whether tracing is on.

    A provider already installed (a test's in-memory one, or an embedding application's) is kept.
    """
    if not tracing_enabled(settings) and exporter is None:
        return False
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = (settings.otel_exporter_otlp_endpoint or "").rstrip("/")
        exporter = OTLPSpanExporter(endpoint=endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": f"{settings.otel_service_name}-{component}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing to %s", settings.otel_exporter_otlp_endpoint or type(exporter).__name__)
    return True


def temporal_interceptors(settings: Settings) -> list[Any]:
    """Client and worker interceptors that carry the trace through Temporal (empty when off)."""
    if not tracing_enabled(settings):
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]
