"""What an SRE watches: /metrics after real traffic, JSON log lines with their context, and one
trace from an API request through Temporal into the workflow's activities."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import ActivityEnvironment

from clusterflow import metrics
from clusterflow.logs import ContextFilter, JsonFormatter
from tests.conftest import Org
from tests.helpers import deploy_document, wait_for_operation

pytestmark = pytest.mark.usefixtures("worker")


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_follow_requests_operations_retries_and_approvals(api: httpx.AsyncClient, org: Org) -> None:
    before = await scrape(api)
    # A deploy whose NETWORK phase fails once, so it is retried, then succeeds.
    doc = deploy_document("watched", failAt="NETWORK", failTimes=1)
    accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
    assert (await wait_for_operation(api, org.headers(), accepted["operationId"]))["status"] == "SUCCEEDED"
    await api.get("/v1/clusters/cl_does_not_exist", headers=org.headers())
    # Deletes need approval by default: this one waits.
    assert (await api.delete(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).status_code == 202
    delete_op = (await api.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    await wait_for_operation(api, org.headers(), delete_op["activeOperationId"], until={"AWAITING_APPROVAL"})
    with metrics.stream_subscriber("sse"):
        metrics.rate_limited("POST", "/v1/clusters")
        after = await scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("clusterflow_http_requests_total", method="POST", route="/v1/clusters", status="202") == 1
    assert delta("clusterflow_http_requests_total", method="GET", route="/v1/clusters/{clusterId}", status="404") == 1
    assert delta("clusterflow_operations_total", operation_type="CLUSTER_DEPLOY", status="RUNNING") == 1
    assert delta("clusterflow_operations_total", operation_type="CLUSTER_DEPLOY", status="SUCCEEDED") == 1
    assert delta("clusterflow_operations_total", operation_type="CLUSTER_DELETE", status="AWAITING_APPROVAL") == 1
    assert (
        delta("clusterflow_operation_duration_seconds_count", operation_type="CLUSTER_DEPLOY", status="SUCCEEDED") == 1
    )
    assert delta("clusterflow_operation_events_written_total", kind="phase") > 6
    assert delta("clusterflow_activity_retries_total", activity_type="local.deploy_phase") == 1
    assert (
        value(after, "clusterflow_operations_in_flight", operation_type="CLUSTER_DELETE", status="AWAITING_APPROVAL")
        >= 1
    )
    assert value(after, "clusterflow_approvals_waiting") >= 1
    assert value(after, "clusterflow_stream_subscribers", transport="sse") >= 1
    assert delta("clusterflow_rate_limit_rejections_total", method="POST", route="/v1/clusters") == 1
    # Raw paths never become labels.
    assert not any("cl_does_not_exist" in str(labels) for _, labels in after)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_json_log_lines_carry_request_organization_operation_and_activity(
    api: httpx.AsyncClient, org: Org, json_log: io.StringIO
) -> None:
    response = await api.post("/v1/clusters", json=deploy_document("logged"), headers=org.headers())
    accepted = response.json()["data"]
    await wait_for_operation(api, org.headers(), accepted["operationId"])

    def in_activity() -> None:
        logging.getLogger("clusterflow.test").info("inside an activity")

    ActivityEnvironment().run(in_activity)
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    access = next(
        line for line in lines if line["logger"] == "clusterflow.access" and "POST /v1/clusters" in line["message"]
    )
    assert access["request_id"] == response.headers["X-Request-ID"]
    assert access["organization_id"] == org.id
    assert access["operation_id"] == accepted["operationId"]
    assert access["level"] == "INFO" and access["ts"].endswith("Z")
    activity_line = next(line for line in lines if line["message"] == "inside an activity")
    assert activity_line["activity_type"] == "unknown"  # ActivityEnvironment's default activity info
    assert activity_line["workflow_id"] and activity_line["attempt"] == 1


@pytest.fixture
async def spans() -> AsyncIterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process; later tests record into a closed exporter
    yield exporter
    exporter.shutdown()


@pytest.mark.parametrize("settings", [{"otel_exporter_otlp_endpoint": "http://127.0.0.1:9/unused"}], indirect=True)
async def test_one_trace_follows_a_request_into_its_workflow_and_activities(
    spans: InMemorySpanExporter, api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await api.post(
        "/v1/clusters", json=deploy_document("traced"), headers=org.headers() | {"traceparent": traceparent}
    )
    accepted = response.json()["data"]
    assert (await wait_for_operation(api, org.headers(), accepted["operationId"]))["status"] == "SUCCEEDED"
    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if s.context is not None and f"{s.context.trace_id:032x}" == traceparent[3:35]]
    names = {s.name for s in in_trace}
    assert "POST /v1/clusters" in names
    assert "StartWorkflow:ClusterDeploy" in names
    assert "RunWorkflow:ClusterDeploy" in names
    assert "RunActivity:local.deploy_phase" in names
    assert "RunActivity:records.finish_operation" in names
