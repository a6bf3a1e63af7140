"""Scale-out as production runs it: two `clusterflow api` and two `clusterflow worker` processes
against one Temporal and one PostgreSQL, showing that operations, streams and rate limits behave
as with one process of each.

- Operations started through either API complete, both APIs show the same records, an
  idempotency key holds across them, the workers together finish each operation exactly once,
  and the APIs log JSON lines carrying the request, organization and operation they concern.
- Streams: an SSE client on one API follows an operation enqueued through the other and gets
  every event once, in order (events are rows; each process's LISTEN hears every worker's
  notification). A client whose API is SIGKILLed mid-stream resumes on the other with
  `Last-Event-ID`: no gap, no duplicate.
- Rate limits: the per-key allowance is shared, not multiplied: a burst spread over both APIs
  gets about the configured limit in total, and both answer 429 with `Retry-After` and the
  RateLimit headers.

One test drives the three parts in order on one stack, because each part changes the stack
(the stream part kills an API; the rate-limit part replaces the APIs by a pair configured with a
low read limit) and starting the stack costs more than the parts themselves.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterflow.devstack.postgres import free_port
from clusterflow.records.organizations import create_api_key
from clusterflow.settings import Settings
from clusterflow.vault import dev_vault_keys
from tests.conftest import Org, Services, test_settings
from tests.helpers import all_events, deploy_document, wait_for_operation
from tests.live import SseEvent, sse_events, sse_headers
from tests.processes import kill_hard, settings_env, spawn, stop, wait_http

DEPLOYS = 6
READS_PER_SECOND = 2
"""Low, so a process's bucket refills one read a second: a burst of a few dozen milliseconds
gets the burst allowance and no refill, and the count says whether the limit was shared."""
BURST = 12


@dataclass
class Stack:
    settings: Settings
    shared: dict[str, str]
    logs: Path
    apis: list[str] = field(default_factory=list)
    api_processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Every process started, stopped at teardown (stopping one already gone is a no-op)."""

    def start_apis(self, count: int, **env: str) -> list[tuple[str, subprocess.Popen[bytes]]]:
        """Start `count` API processes together (their start-ups overlap), wait until they answer."""
        started = []
        for _ in range(count):
            port = free_port()
            n = len(self.api_processes)
            process = spawn(
                "api",
                settings_env(self.settings, CLUSTERFLOW_API_PORT=str(port), **self.shared, **env),
                self.logs / f"api-{n}.log",
            )
            self.processes.append(process)
            self.api_processes.append(process)
            self.apis.append(f"http://127.0.0.1:{port}")
            started.append((self.apis[-1], process))
        for url, process in started:
            wait_http(f"{url}/healthz", process)
        return started


@pytest.fixture
def stack(services: Services, tmp_path: Path) -> Iterator[Stack]:
    settings = test_settings(services)
    shared = {"CLUSTERFLOW_LOG_FORMAT": "json", "CLUSTERFLOW_VAULT_KEYS": dev_vault_keys(tmp_path)}
    stack = Stack(settings, shared, tmp_path)
    sdk_metrics_port = free_port()
    try:
        started = []
        for i in range(2):
            metrics_port = free_port()
            extra = {"CLUSTERFLOW_TEMPORAL_SDK_METRICS_PORT": str(sdk_metrics_port)} if i == 0 else {}
            env = settings_env(settings, CLUSTERFLOW_METRICS_PORT=str(metrics_port), **shared, **extra)
            process = spawn("worker", env, tmp_path / f"worker-{i}.log")
            stack.processes.append(process)
            stack.workers.append(f"http://127.0.0.1:{metrics_port}")
            started.append((f"{stack.workers[-1]}/metrics", process))
        stack.start_apis(2)
        for url, process in started:
            wait_http(url, process)
        stack.workers.append(f"http://127.0.0.1:{sdk_metrics_port}")
        yield stack
    finally:
        for process in stack.processes:
            stop(process)


def samples(text: str, name: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels.get("status") == "SUCCEEDED"
    )


async def test_two_apis_and_two_workers_behave_as_one(stack: Stack, org: Org, pool: asyncpg.Pool) -> None:
    clients = [httpx.AsyncClient(base_url=url, timeout=10) for url in stack.apis]
    try:
        await _operations_behave_as_one(clients, stack.workers, org)
    finally:
        for client in clients:
            await client.aclose()

    for i in range(2):
        lines = [
            json.loads(line) for line in (stack.logs / f"api-{i}.log").read_text().splitlines() if line.startswith("{")
        ]
        posts = [
            line for line in lines if line["logger"] == "clusterflow.access" and "POST /v1/clusters" in line["message"]
        ]
        assert posts and all(p["request_id"].startswith("req_") and p["organization_id"] == org.id for p in posts)
        assert all(p["operation_id"].startswith("op_") for p in posts)

    await _streams_cross_processes_and_survive_a_killed_one(stack, org)
    await _rate_limits_are_shared_not_multiplied(stack, org, pool)


async def _operations_behave_as_one(clients: list[httpx.AsyncClient], workers: list[str], org: Org) -> None:
    accepted = []
    for i in range(DEPLOYS):
        response = await clients[i % 2].post("/v1/clusters", json=deploy_document(f"scale-{i}"), headers=org.headers())
        assert response.status_code == 202, response.text
        accepted.append(response.json()["data"])
    # Each operation is followed through the API that did not start it.
    records = await asyncio.gather(
        *(wait_for_operation(clients[(i + 1) % 2], org.headers(), a["operationId"], 90) for i, a in enumerate(accepted))
    )
    assert [r["status"] for r in records] == ["SUCCEEDED"] * DEPLOYS
    for a in accepted:
        seen = [
            (await c.get(f"/v1/operations/{a['operationId']}", headers=org.headers())).json()["data"] for c in clients
        ]
        assert seen[0] == seen[1]
    listed = [(await c.get("/v1/operations", headers=org.headers())).json()["data"] for c in clients]
    assert listed[0] == listed[1]

    # One idempotency key, two APIs: one operation.
    key = {"Idempotency-Key": "scale-out-key"}
    first = await clients[0].post("/v1/clusters", json=deploy_document("scale-idem"), headers=org.headers() | key)
    again = await clients[1].post("/v1/clusters", json=deploy_document("scale-idem"), headers=org.headers() | key)
    assert first.status_code == again.status_code == 202
    assert first.json()["data"]["operationId"] == again.json()["data"]["operationId"]
    await wait_for_operation(clients[1], org.headers(), first.json()["data"]["operationId"], 90)

    # Together the workers recorded exactly the deploys we started: none lost, none twice.
    # (Which worker takes which workflow is Temporal's choice, so no per-worker count is asserted.)
    async with httpx.AsyncClient(timeout=10) as scraper:
        per_worker = [
            samples((await scraper.get(f"{w}/metrics")).text, "clusterflow_operations_total") for w in workers[:2]
        ]
        sdk = (await scraper.get(f"{workers[2]}/metrics")).text
    assert sum(per_worker) == DEPLOYS + 1
    # The first worker also exposes the Temporal SDK's own metrics.
    assert "temporal_activity_execution_latency" in sdk or "temporal_workflow_completed" in sdk


async def _follow(
    client: httpx.AsyncClient,
    org: Org,
    operation_id: str,
    into: list[SseEvent],
    *,
    last_event_id: int | None = None,
    seen: asyncio.Event | None = None,
) -> None:
    """Follow the operation's SSE stream to its terminal event, appending each event to `into`
    as it arrives (so what came before a cut is kept); set `seen` after the third event."""
    url = f"/v1/operations/{operation_id}/events"
    params = {"follow": "true", "untilTerminal": "true"}
    async with client.stream("GET", url, headers=sse_headers(org.headers(), last_event_id), params=params) as response:
        assert response.status_code == 200, await response.aread()
        async for item in sse_events(response):
            if isinstance(item, SseEvent):
                into.append(item)
                if seen is not None and len(into) >= 3:
                    seen.set()


async def _streams_cross_processes_and_survive_a_killed_one(stack: Stack, org: Org) -> None:
    a, b = (httpx.AsyncClient(base_url=url, timeout=30) for url in stack.apis[:2])
    try:
        response = await a.post(
            "/v1/clusters", json=deploy_document("scale-stream", phaseSeconds=0.3), headers=org.headers()
        )
        assert response.status_code == 202, response.text
        operation_id = response.json()["data"]["operationId"]

        on_b: list[SseEvent] = []
        whole_on_b = asyncio.create_task(_follow(b, org, operation_id, on_b))
        on_a: list[SseEvent] = []
        mid_stream = asyncio.Event()
        cut = asyncio.create_task(_follow(a, org, operation_id, on_a, seen=mid_stream))
        await asyncio.wait_for(mid_stream.wait(), 30)
        kill_hard(stack.api_processes[0])
        with pytest.raises(httpx.TransportError):
            await cut

        resumed: list[SseEvent] = []
        await _follow(b, org, operation_id, resumed, last_event_id=on_a[-1].id)
        await whole_on_b
        stored = await all_events(b, org.headers(), operation_id)
    finally:
        await a.aclose()
        await b.aclose()

    assert stored[-1]["labels"]["status"] == "SUCCEEDED"
    every = list(range(1, len(stored) + 1))
    # Enqueued through A, followed on B: every event once, in order.
    assert [e.id for e in on_b] == every
    assert [e.data for e in on_b] == stored
    # Cut by A's death, resumed on B: nothing missing, nothing twice.
    assert resumed, "the operation ended before API A was killed; the cut was not mid-stream"
    assert [e.id for e in on_a + resumed] == every
    assert [e.data for e in on_a + resumed] == stored


async def _rate_limits_are_shared_not_multiplied(stack: Stack, org: Org, pool: asyncpg.Pool) -> None:
    # A fresh pair with a low read limit and a fast heartbeat replaces the old APIs. B deregisters
    # as it stops; A, killed, left its row behind, which no one counts once it is three beats old.
    stop(stack.api_processes[1])
    pair = stack.start_apis(
        2,
        CLUSTERFLOW_RATE_LIMIT_READS_PER_SECOND=str(READS_PER_SECOND),
        CLUSTERFLOW_INSTANCE_HEARTBEAT_SECONDS="0.3",
    )
    clients = [httpx.AsyncClient(base_url=url, timeout=10) for url, _ in pair]
    _, probe_key = await create_api_key(pool, org.id, "scale-out probe", "viewer")
    try:
        # Wait until each process has learnt of the other: it then grants a key half the limit
        # (RateLimit-Limit 1, not 2). A second key probes, leaving the burst's key untouched.
        for client in clients:
            for _ in range(100):
                response = await client.get("/v1/whoami", headers=org.headers(probe_key))
                if response.headers["ratelimit-limit"] == str(READS_PER_SECOND // 2):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{client.base_url} never learnt of the other API process")

        # One key, a burst spread over both processes as a load balancer would.
        burst = await asyncio.gather(*(clients[i % 2].get("/v1/whoami", headers=org.headers()) for i in range(BURST)))
    finally:
        for client in clients:
            await client.aclose()

    allowed = [r for r in burst if r.status_code == 200]
    refused = [r for r in burst if r.status_code == 429]
    assert len(allowed) + len(refused) == len(burst)
    # About the limit in total, not twice it (the refill during the burst may add one).
    assert READS_PER_SECOND - 1 <= len(allowed) <= READS_PER_SECOND + 1
    for i in range(2):
        mine = burst[i::2]
        assert any(r.status_code == 200 for r in mine) and any(r.status_code == 429 for r in mine)
    for response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["ratelimit-limit"] == str(READS_PER_SECOND // 2)
        assert response.headers["ratelimit-remaining"] == "0"
        assert int(response.headers["ratelimit-reset"]) >= 1
        assert response.json()["error"]["code"] == "RATE_LIMITED"
