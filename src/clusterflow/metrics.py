"""Prometheus metrics of every process, defined once so names and labels stay consistent.

Counters and histograms count what *this process* did (the API: requests, rate-limit
rejections, stream subscribers; a worker: operation transitions it recorded, their durations,
events written, activity retries, notification deliveries). Sum them across replicas. The API's
`/metrics` also reports gauges read from PostgreSQL at scrape time (operations in flight by
type and status, approvals waiting); every replica reports the same global value, so aggregate
those with `max`, not `sum`. Label values are bounded: routes are templates
(`/v1/operations/{operationId}`), never raw paths.

Helpers other modules use: `stream_subscriber()` (the streams code wraps each subscriber in it),
`rate_limited()` (the rate limiter calls it when it refuses a request).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "clusterflow_http_requests_total",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "clusterflow_http_request_duration_seconds",
    "Time to answer an HTTP request (to the first byte of a stream)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OPERATIONS = Counter(
    "clusterflow_operations_total",
    "Operation status transitions recorded (RUNNING, AWAITING_APPROVAL and every terminal status)",
    ["operation_type", "status"],
)
OPERATION_DURATION = Histogram(
    "clusterflow_operation_duration_seconds",
    "Time from an operation's acceptance to its terminal status",
    ["operation_type", "status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200),
)
EVENTS_WRITTEN = Counter("clusterflow_operation_events_written_total", "Operation events appended, by kind", ["kind"])
STREAM_SUBSCRIBERS = Gauge(
    "clusterflow_stream_subscribers", "Clients following an operation stream now, by transport", ["transport"]
)
ACTIVITY_RETRIES = Counter(
    "clusterflow_activity_retries_total", "Activity attempts after the first, by activity type", ["activity_type"]
)
ACTIVITY_FAILURES = Counter(
    "clusterflow_activity_failures_total", "Activity attempts that raised, by activity type", ["activity_type"]
)
AUDIT_EVENTS_DROPPED = Counter(
    "clusterflow_audit_events_dropped_total",
    "Audit events an API process dropped: its queue was full while the database was unreachable",
)
AUDIT_QUEUE = Gauge("clusterflow_audit_events_queued", "Audit events waiting to be written by this API process")
RATE_LIMIT_REJECTIONS = Counter(
    "clusterflow_rate_limit_rejections_total", "Requests refused with 429, by method and route", ["method", "route"]
)
NOTIFICATION_DELIVERIES = Counter(
    "clusterflow_notification_deliveries_total",
    "Notification delivery attempts, by channel and outcome",
    ["channel", "outcome"],
)
OPERATIONS_IN_FLIGHT = Gauge(
    "clusterflow_operations_in_flight",
    "Operations not yet terminal, by type and status (from PostgreSQL at scrape time)",
    ["operation_type", "status"],
)
APPROVALS_WAITING = Gauge(
    "clusterflow_approvals_waiting", "Operations waiting for an approval decision (from PostgreSQL at scrape time)"
)


@contextmanager
def stream_subscriber(transport: str) -> Iterator[None]:
    """Count a stream subscriber (`sse` or `websocket`) for as long as the block runs."""
    gauge = STREAM_SUBSCRIBERS.labels(transport)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def rate_limited(method: str, route: str) -> None:
    """Count one request refused by the rate limiter (`route` is the route template)."""
    RATE_LIMIT_REJECTIONS.labels(method, route).inc()


def operation_transition(operation_type: str, status: str, seconds: float | None = None) -> None:
    OPERATIONS.labels(operation_type, status).inc()
    if seconds is not None:
        OPERATION_DURATION.labels(operation_type, status).observe(max(seconds, 0.0))
