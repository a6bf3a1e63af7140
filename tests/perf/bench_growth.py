"""Cost as the work grows (`make bench-growth`): the API's reads, lists, export and enqueue on a
database holding 10k, 100k and 1M operations of history, beside the same on the empty database.

Why it is shaped this way:
- The history is written with COPY (asyncpg `copy_records_to_table`), not through the API: a year
  of history through the API would take hours, and what is measured is reading it. The shapes are
  realistic and come from the real thing: the first deploy of the run goes through the API, and
  its operation's `workflow_input`, its cluster's `spec` and its audit row's `details` are the
  templates every generated row copies (so rows have a real width). Operations per cluster
  average 10 (a deploy, weekly updates, 30% end with a delete), events per operation average 25,
  two audit rows per operation; 20 organizations of very different sizes (55%, 25%, 12% and 17
  small ones sharing 8%), spread over two years. The API key is the largest organization's: every
  measure runs against the worst case.
- The load goes in with `session_replication_role = replica` (the rows are consistent by
  construction: foreign keys and NOTIFY triggers would only cost time, and a million NOTIFYs
  would reach the API's listener), then `VACUUM (ANALYZE)`, as a DBA does after a bulk load.
- The sizes are cumulative (10k, then 90k more, then 900k more): each increment adds clusters
  with their history over the same two years, so new rows interleave with old ones.
- Every figure is over HTTP against one real `clusterflow api` process (the `bench_control_plane`
  stack: embedded PostgreSQL and Temporal), requests one at a time from one client, so p99 is the
  cost of the query, not of queueing. `GET /v1/operations/{id}` reads IDs never read before (the
  API's operation cache is cold); deep page tokens are built the way the API encodes them.
- EXPLAIN (ANALYZE, BUFFERS) at the largest size runs the very SQL the records modules send: their
  functions are called with a recording executor that passes every query through and keeps it.

Goals (issue 21): p99 of every list and read at the largest size within 1.5x of the smallest
(10k); the export in constant memory (the API's peak RSS during it does not grow with the rows);
enqueue unchanged (p99 within 1.5x of the empty database's). Reports: `.clusterflow/bench/growth.*`
and one PNG per measure (`growth-<measure>.png`).

    python tests/perf/bench_growth.py [--sizes 10000,100000,1000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from ulid import ULID

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf.bench_control_plane import Stack, deploy_document, stats
from tests.perf.bench_stream_latency import machine
from tests.perf.services import embedded_services

from clusterflow.records import audit, clusters, operations
from clusterflow.records.db import create_pool
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SIZES = (10_000, 100_000, 1_000_000)
ORG_SHARES = [0.55, 0.25, 0.12] + [0.08 / 17] * 17
OPS_PER_CLUSTER = 10
EVENTS_PER_OPERATION = (20, 30)  # uniform: 25 on average
AUDIT_PER_OPERATION = 2
LONG_OPERATION_EVENTS = 10_000
HISTORY_DAYS = 730
PAGE = 20  # page size of the list measures; "page 1,000" is 20,000 rows deep
AUDIT_PAGE = 50
WINDOW = Settings().positional_page_window
"""How deep the API's positional audit pages reach (`CLUSTERFLOW_POSITIONAL_PAGE_WINDOW`, passed
on to the API process): `audit_window_page` reads the deepest page it allows."""
BOUND = Settings().exact_total_limit
"""The API's bound on exact totals (`CLUSTERFLOW_EXACT_TOTAL_LIMIT`), for the EXPLAIN section."""
GOAL_RATIO = 1.5
PHASES = ("VALIDATE", "NETWORK", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY")
# (event_type, action, resource, status) of the audit row written beside an operation's own one.
OTHER_AUDIT = (
    ("OPERATION", "DECIDE", "/v1/operations/{operationId}/approval", 200),
    ("CLUSTER", "UPDATE", "/v1/clusters/{clusterId}/labels", 200),
    ("API_KEY", "CREATE", "/v1/api-keys", 201),
    ("OPERATION", "CANCEL", "/v1/operations/{operationId}/cancel", 202),
    ("CLUSTER", "ACCESS_DENIED", "/v1/clusters", 403),
)
LIST_MEASURES = (
    "operations_page1",
    "operations_deep_page",
    "operations_status",
    "operations_type",
    "operations_cluster",
    "clusters_page1",
    "clusters_deep_page",
    "cluster_operations",
    "operation_get_cold",
    "events_deep_cursor",
    "audit_page1",
    "audit_filtered",
    "audit_window_page",
    "audit_deep_token",
)


# --- the generator -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Templates:
    """Widths of real rows, copied from the run's first deploy through the API."""

    workflow_input: str
    metadata: str
    spec: str
    audit_details: str
    provider: str
    provisioner_type: str
    region: str
    kubernetes_version: str | None


@dataclass
class Org:
    id: str
    share: float
    key_id: str = ""
    operation_ids: list[str] = field(default_factory=list)
    cluster_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedOperation:
    id: str
    status: str
    started: datetime
    completed: datetime
    events: int


def ulid_at(prefix: str, when: datetime) -> str:
    return f"{prefix}_{ULID.from_datetime(when)}"


class History:
    """One increment of history: its rows, generated lazily for COPY."""

    def __init__(self, rng: random.Random, orgs: list[Org], count: int, t: Templates, long_operation: bool) -> None:
        self.rng, self.t = rng, t
        self.now = datetime.now(UTC) - timedelta(days=1)
        self.clusters: list[tuple[Any, ...]] = []
        self.operations: list[tuple[Any, ...]] = []
        self.planned: list[PlannedOperation] = []
        self.audit_owner: list[tuple[str, str, str, str]] = []  # (org, key, cluster, op type) per op
        for org in orgs:
            self._org(org, max(1, round(count * org.share)))
        if long_operation:  # one operation of the largest organization with a long event log
            first = self.planned[0]
            self.planned[0] = PlannedOperation(
                first.id, first.status, first.started, first.completed, LONG_OPERATION_EVENTS
            )
            self.long_operation_id = first.id
            index = next(i for i, row in enumerate(self.operations) if row[0] == first.id)
            self.operations[index] = (*self.operations[index][:13], LONG_OPERATION_EVENTS, *self.operations[index][14:])

    def _org(self, org: Org, count: int) -> None:
        rng, t = self.rng, self.t
        cluster_count = max(1, count // OPS_PER_CLUSTER)
        per_cluster = [1] * cluster_count
        for i in rng.choices(range(cluster_count), k=count - cluster_count):
            per_cluster[i] += 1
        for n in per_cluster:
            born = self.now - timedelta(seconds=rng.uniform(3600, HISTORY_DAYS * 86400))
            cluster_id = ulid_at("cl", born)
            name = f"c-{cluster_id[-12:].lower()}"
            deleted = n > 1 and rng.random() < 0.3
            span = (self.now - born).total_seconds()
            times = sorted(born + timedelta(seconds=rng.uniform(0, span)) for _ in range(n - 1))
            times.insert(0, born)
            last_update = times[-1]
            for index, created in enumerate(times):
                op_type = "CLUSTER_DEPLOY" if index == 0 else "CLUSTER_UPDATE"
                if deleted and index == n - 1:
                    op_type = "CLUSTER_DELETE"
                roll = rng.random()
                status = (
                    "SUCCEEDED"
                    if roll < 0.88
                    else "FAILED"
                    if roll < 0.95
                    else "CANCELLED"
                    if roll < 0.98
                    else "REJECTED"
                )
                op_id = ulid_at("op", created)
                started = created + timedelta(seconds=rng.uniform(0.05, 2))
                completed = started + timedelta(seconds=rng.uniform(60, 1200))
                events = rng.randint(*EVENTS_PER_OPERATION)
                workflow = {"CLUSTER_DEPLOY": "ClusterDeploy", "CLUSTER_UPDATE": "ClusterUpdate"}.get(
                    op_type, "ClusterDelete"
                )
                self.operations.append(
                    (
                        op_id, org.id, cluster_id, name, op_type, status, PHASES[-1] if status == "SUCCEEDED" else
                        rng.choice(PHASES), 100 if status == "SUCCEEDED" else rng.randint(5, 95),
                        f"{op_type.lower()} {status.lower()}", org.key_id, workflow, t.workflow_input, started,
                        events, created, started, completed, completed, t.metadata,
                    )
                )  # fmt: skip
                self.planned.append(PlannedOperation(op_id, status, started, completed, events))
                self.audit_owner.append((org.id, org.key_id, cluster_id, op_type))
                org.operation_ids.append(op_id)
            state = "DELETED" if deleted else ("ACTIVE" if rng.random() < 0.95 else "FAILED")
            self.clusters.append(
                (
                    cluster_id, org.id, name, t.provider, t.provisioner_type, t.region, t.kubernetes_version, state,
                    t.spec, born, last_update, last_update if deleted else None,
                )
            )  # fmt: skip
            if not deleted:
                org.cluster_ids.append(cluster_id)

    CLUSTER_COLUMNS = (
        "id", "organization_id", "name", "provider", "provisioner_type", "region", "kubernetes_version", "state",
        "spec", "created_at", "updated_at", "deleted_at",
    )  # fmt: skip
    OPERATION_COLUMNS = (
        "id", "organization_id", "cluster_id", "cluster_name", "operation_type", "status", "current_phase",
        "progress_percentage", "message", "requested_by", "workflow_type", "workflow_input", "workflow_started_at",
        "event_count", "created_at", "started_at", "last_update", "completed_at", "metadata",
    )  # fmt: skip
    EVENT_COLUMNS = (
        "operation_id", "sequence", "event_key", "kind", "timestamp", "level", "phase", "progress_percentage",
        "message",
    )  # fmt: skip
    AUDIT_COLUMNS = (
        "id", "organization_id", "occurred_at", "event_type", "action", "resource", "resource_id", "actor",
        "actor_role", "request_id", "ip_address", "user_agent", "success", "status_code", "details",
    )  # fmt: skip

    def events(self) -> Iterator[tuple[Any, ...]]:
        for op in sorted(self.planned, key=lambda o: o.id):  # in key order: index pages fill in turn
            step = (op.completed - op.started) / op.events
            per_phase = max(1, op.events // len(PHASES))
            for sequence in range(1, op.events + 1):
                phase = PHASES[min(len(PHASES) - 1, (sequence - 1) // per_phase)]
                last = sequence == op.events
                level = "ERROR" if last and op.status == "FAILED" else "INFO"
                yield (
                    op.id, sequence, f"{phase}/{sequence}", "status" if last else "log", op.started + step * sequence,
                    level, phase, min(100, sequence * 100 // op.events), f"{phase.lower()}: step {sequence} of "
                    f"{op.events} done (simulated history for the growth bench)",
                )  # fmt: skip

    def audit_rows(self) -> Iterator[tuple[Any, ...]]:
        rng, t = self.rng, self.t
        for op, (org_id, key_id, cluster_id, op_type) in zip(self.planned, self.audit_owner, strict=True):
            method_action = {"CLUSTER_DEPLOY": "CREATE", "CLUSTER_UPDATE": "UPDATE"}.get(op_type, "DELETE")
            yield (
                ulid_at("aud", op.started), org_id, op.started, "CLUSTER", method_action,
                "/v1/clusters" if op_type == "CLUSTER_DEPLOY" else "/v1/clusters/{clusterId}", cluster_id, key_id,
                "owner", ulid_at("req", op.started), "10.1.2.3", "clusterflow-cli/1.0", True, 202, t.audit_details,
            )  # fmt: skip
            for _ in range(AUDIT_PER_OPERATION - 1):
                when = op.completed + timedelta(seconds=rng.uniform(1, 86400))
                event_type, action, resource, status = rng.choice(OTHER_AUDIT)
                yield (
                    ulid_at("aud", when), org_id, when, event_type, action, resource, op.id, key_id, "owner",
                    ulid_at("req", when), "10.1.2.3", "clusterflow-console/1.0", status < 400, status,
                    t.audit_details,
                )  # fmt: skip


async def load(dsn: str, history: History) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    seconds: dict[str, float] = {}
    try:
        # The rows are consistent by construction: no foreign key checks, no NOTIFY triggers.
        await conn.execute("SET session_replication_role = replica")
        for table, columns, rows in (
            ("clusters", History.CLUSTER_COLUMNS, iter(history.clusters)),
            ("operations", History.OPERATION_COLUMNS, iter(history.operations)),
            ("operation_events", History.EVENT_COLUMNS, history.events()),
            ("audit_events", History.AUDIT_COLUMNS, history.audit_rows()),
        ):
            started = time.monotonic()
            await conn.copy_records_to_table(table, records=rows, columns=list(columns))
            seconds[table] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        await conn.execute("VACUUM (ANALYZE) clusters, operations, operation_events, audit_events")
        seconds["vacuum_analyze"] = round(time.monotonic() - started, 1)
    finally:
        await conn.close()
    return seconds


# --- measures over HTTP --------------------------------------------------------------------------


async def timed(http: httpx.AsyncClient, paths: Callable[[int], str], count: int) -> dict[str, Any]:
    for i in range(3):  # warm the connection and the plan cache, unmeasured
        assert (await http.get(paths(-1 - i))).status_code == 200
    latencies: list[float] = []
    for i in range(count):
        path = paths(i)
        started = time.monotonic()
        response = await http.get(path)
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return stats(latencies)


def vm_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


async def measure_export(http: httpx.AsyncClient, pid: int) -> dict[str, Any]:
    """The whole organization's audit log as JSON, read as it streams; the API's RSS sampled."""
    before = vm_kb(pid, "VmRSS")
    peak = before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, vm_kb(pid, "VmRSS"))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    size = rows = 0
    async with http.stream("GET", "/v1/audit/events/export", params={"format": "json"}, timeout=None) as response:
        assert response.status_code == 200
        tail = b""  # a key split across two chunks is counted once
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            data = tail + chunk
            rows += data.count(b'"request_id"')
            tail = data[-11:]
    elapsed = time.monotonic() - started
    done.set()
    await sampler
    return {
        "rows": rows,
        "bytes": size,
        "seconds": round(elapsed, 1),
        "rows_per_second": round(rows / max(elapsed, 1e-9)),
        "rss_before_kb": before,
        "rss_peak_kb": peak,
        "rss_growth_kb": peak - before,
    }


async def measure_enqueue(http: httpx.AsyncClient, count: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    latencies: list[float] = []
    todo = iter(range(count))

    async def client() -> None:
        for i in todo:
            started = time.monotonic()
            response = await http.post("/v1/clusters", json=deploy_document(f"g-{run}-{i}"))
            latencies.append(time.monotonic() - started)
            assert response.status_code == 202, response.text

    await asyncio.gather(*(client() for _ in range(4)))
    return stats(latencies) | {"clients": 4}


async def finish_enqueued(pool: Any, org_id: str) -> None:
    """The measured enqueues went to a task queue nobody polls: end them as a worker would, so
    the next size does not carry hundreds of operations in flight (a real one has a few)."""
    await pool.execute(
        """UPDATE operations SET status = 'SUCCEEDED', completed_at = now(), progress_percentage = 100
            WHERE organization_id = $1 AND status IN ('PENDING', 'AWAITING_APPROVAL', 'RUNNING', 'CANCELLING')""",
        org_id,
    )
    await pool.execute(
        "UPDATE clusters SET state = 'ACTIVE' WHERE organization_id = $1 AND state = 'PROVISIONING'", org_id
    )


async def deep_id(pool: Any, table: str, org_id: str, depth: int, live_only: bool = False) -> tuple[str, int]:
    """The row a client reaches after `depth` rows (newest first), or the last page's start."""
    where = "organization_id = $1" + (" AND state <> 'DELETED'" if live_only else "")
    total = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", org_id)  # noqa: S608
    depth = max(0, min(depth, total - PAGE))
    row_id = await pool.fetchval(
        f"SELECT id FROM {table} WHERE {where} ORDER BY id DESC OFFSET $2 LIMIT 1",  # noqa: S608
        org_id,
        depth,
    )
    return str(row_id), depth


async def audit_deep_token(pool: Any, org_id: str, depth: int) -> str:
    """The token a client holds after reading `depth` events (as the API encodes it), or after
    the last page's start when the log is shorter."""
    total = await pool.fetchval("SELECT count(*) FROM audit_events WHERE organization_id = $1", org_id)
    depth = max(1, min(depth, total - 50))
    event_id = await pool.fetchval(
        "SELECT id FROM audit_events WHERE organization_id = $1 ORDER BY occurred_at DESC, id DESC OFFSET $2 LIMIT 1",
        org_id,
        max(0, depth - 1),
    )
    row = await audit.get(pool, org_id, event_id)
    assert row is not None
    return audit.encode_page_token(row)


async def measure(
    stack: Stack, base: str, api_pid: int, pool: Any, org: Org, long_operation: str | None, requests: int, size: int
) -> dict[str, Any]:
    rng = random.Random(size)
    cold_ids = rng.sample(org.operation_ids, min(len(org.operation_ids), requests + 3))
    cluster_ids = org.cluster_ids or [""]
    op_deep, op_depth = await deep_id(pool, "operations", org.id, 1000 * PAGE)
    cl_deep, cl_depth = await deep_id(pool, "clusters", org.id, 1000 * PAGE, live_only=True)
    audit_total = await pool.fetchval("SELECT count(*) FROM audit_events WHERE organization_id = $1", org.id)
    # The deepest positional page the window allows (page x pageSize <= WINDOW: page 200 at
    # 50 is 9,950 rows deep), or the log's last page; the token goes 1,000 pages deep.
    audit_page = max(1, min(WINDOW, audit_total) // AUDIT_PAGE)
    token_page = max(1, min(1000, audit_total // AUDIT_PAGE))
    audit_token = await audit_deep_token(pool, org.id, (token_page - 1) * AUDIT_PAGE)
    op_token, cl_token = operations.encode_page_token(op_deep), clusters.encode_page_token(cl_deep)
    long_id = long_operation or (org.operation_ids[0] if org.operation_ids else "")
    long_cursor = max(
        0, int(await pool.fetchval("SELECT event_count FROM operations WHERE id = $1", long_id) or 0) - 500
    )
    paths: dict[str, Callable[[int], str]] = {
        "operations_page1": lambda i: f"/v1/operations?limit={PAGE}",
        "operations_deep_page": lambda i: f"/v1/operations?limit={PAGE}&pageToken={op_token}",
        "operations_status": lambda i: f"/v1/operations?limit={PAGE}&status=FAILED",
        "operations_type": lambda i: f"/v1/operations?limit={PAGE}&operationType=CLUSTER_DELETE",
        "operations_cluster": lambda i: f"/v1/operations?limit={PAGE}&clusterId={rng.choice(cluster_ids)}",
        "clusters_page1": lambda i: f"/v1/clusters?limit={PAGE}",
        "clusters_deep_page": lambda i: f"/v1/clusters?limit={PAGE}&pageToken={cl_token}",
        "cluster_operations": lambda i: f"/v1/clusters/{rng.choice(cluster_ids)}/operations?limit={PAGE}",
        "operation_get_cold": lambda i: f"/v1/operations/{cold_ids[i]}",
        "events_deep_cursor": lambda i: f"/v1/operations/{long_id}/events?cursor={long_cursor}&limit=200",
        "audit_page1": lambda i: "/v1/audit/events?pageSize=50",
        "audit_filtered": lambda i: (
            "/v1/audit/events?pageSize=50&"
            + rng.choice(["eventType=OPERATION", "action=DELETE", f"userId={org.key_id}", "startDate=2026-01-01"])
        ),
        "audit_window_page": lambda i: f"/v1/audit/events?pageSize={AUDIT_PAGE}&page={audit_page}",
        "audit_deep_token": lambda i: f"/v1/audit/events?pageSize=50&pageToken={audit_token}",
    }
    result: dict[str, Any] = {
        "depths": {
            "operations_deep_page_rows": op_depth,
            "clusters_deep_page_rows": cl_depth,
            "audit_window_page": f"page {audit_page} x {AUDIT_PAGE}, {(audit_page - 1) * AUDIT_PAGE} rows deep "
            f"(the deepest the {WINDOW}-row window allows)",
            "audit_deep_token_page": token_page,
            "events_cursor": long_cursor,
        }
    }
    headers = {"Authorization": f"Bearer {stack.key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        for name in LIST_MEASURES:
            if name == "operation_get_cold" and len(cold_ids) < requests + 3:
                continue
            count = requests if name != "operation_get_cold" else len(cold_ids) - 3
            started = time.monotonic()
            result[name] = await timed(http, paths[name], count)  # warm-up reads cold_ids[-3:], unmeasured
            print(f"  {name}: {result[name]} ({time.monotonic() - started:.1f} s)", flush=True)
        result["audit_export"] = await measure_export(http, api_pid)
        print(f"  audit_export: {result['audit_export']}", flush=True)
        result["enqueue"] = await measure_enqueue(http, 300)
        await finish_enqueued(pool, org.id)
        print(f"  enqueue: {result['enqueue']}", flush=True)
    return result


# --- EXPLAIN and sizes ---------------------------------------------------------------------------


class _NoTransaction:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class Recorder:
    """An executor for the records functions: runs each query on the pool and keeps it."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.queries: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.queries.append((sql, args))
        return await self.pool.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.queries.append((sql, args))
        return await self.pool.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.queries.append((sql, args))
        return await self.pool.fetchval(sql, *args)

    def transaction(self) -> Any:
        return _NoTransaction()

    def cursor(self, sql: str, *args: Any, prefetch: int = 0) -> AsyncIterator[Any]:
        self.queries.append((sql, args))

        async def nothing() -> AsyncIterator[Any]:
            return
            yield

        return nothing()


async def explain_all(pool: Any, org: Org, long_operation: str | None) -> dict[str, list[dict[str, Any]]]:
    op_deep, _ = await deep_id(pool, "operations", org.id, 1000 * PAGE)
    cl_deep, _ = await deep_id(pool, "clusters", org.id, 1000 * PAGE, live_only=True)
    cluster = org.cluster_ids[len(org.cluster_ids) // 2]
    long_id = long_operation or org.operation_ids[0]
    token = audit.decode_page_token(await audit_deep_token(pool, org.id, 999 * 50))
    deepest = max(1, WINDOW // 50)
    calls: dict[str, Callable[[Recorder], Any]] = {
        "operations.list_page (page 1)": lambda r: operations.list_page(r, org.id, limit=PAGE, exact_total_limit=BOUND),
        "operations.list_page (deep token)": lambda r: operations.list_page(
            r, org.id, limit=PAGE, after_id=op_deep, exact_total_limit=BOUND
        ),
        "operations.list_page (status)": lambda r: operations.list_page(
            r, org.id, status="FAILED", limit=PAGE, exact_total_limit=BOUND
        ),
        "operations.list_page (type)": lambda r: operations.list_page(
            r, org.id, operation_type="CLUSTER_DELETE", limit=PAGE, exact_total_limit=BOUND
        ),
        "operations.list_page (cluster)": lambda r: operations.list_page(
            r, org.id, cluster_id=cluster, limit=PAGE, exact_total_limit=BOUND
        ),
        "operations.get": lambda r: operations.get(r, org.id, org.operation_ids[len(org.operation_ids) // 3]),
        "operations.events_after (deep cursor)": lambda r: operations.events_after(r, long_id, 9_500, 200),
        "clusters.list_for_org (page 1)": lambda r: clusters.list_for_org(r, org.id, limit=PAGE),
        "clusters.list_for_org (deep token)": lambda r: clusters.list_for_org(r, org.id, limit=PAGE, after_id=cl_deep),
        "audit.page (page 1)": lambda r: audit.page(r, org.id, audit.AuditFilter(), 1, 50, exact_total_limit=BOUND),
        "audit.page (action filter)": lambda r: audit.page(
            r, org.id, audit.AuditFilter(action="DELETE"), 1, 50, exact_total_limit=BOUND
        ),
        f"audit.page (page {deepest}, the window's deepest)": lambda r: audit.page(
            r, org.id, audit.AuditFilter(), deepest, 50, exact_total_limit=BOUND
        ),
        "audit.page (event type filter, the window's deepest)": lambda r: audit.page(
            r, org.id, audit.AuditFilter(event_type="OPERATION"), deepest, 50, exact_total_limit=BOUND
        ),
        "audit.page (deep token)": lambda r: audit.page(
            r, org.id, audit.AuditFilter(), 1, 50, token, exact_total_limit=BOUND
        ),
    }
    plans: dict[str, list[dict[str, Any]]] = {}
    for name, call in calls.items():
        recorder = Recorder(pool)
        await call(recorder)
        plans[name] = []
        for sql, args in recorder.queries:
            if sql.startswith("EXPLAIN"):
                # An estimated total's own EXPLAIN: it only plans, so its plan and planning time.
                sql = "EXPLAIN (SUMMARY) " + sql.split(")", 1)[1].strip()
                rows = await pool.fetch(sql, *args)
                plans[name].append({"sql": " ".join(sql.split()), "plan": "\n".join(r[0] for r in rows)})
                continue
            rows = await pool.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            plans[name].append({"sql": " ".join(sql.split()), "plan": "\n".join(r[0] for r in rows)})
    recorder = Recorder(pool)
    async for _ in audit.stream(recorder, org.id, audit.AuditFilter()):
        pass
    sql, args = recorder.queries[0]
    rows = await pool.fetch(f"EXPLAIN {sql}", *args)  # the export reads every row: its plan, not a run
    plans["audit.stream (export)"] = [{"sql": " ".join(sql.split()), "plan": "\n".join(r[0] for r in rows)}]
    return plans


async def table_sizes(pool: Any) -> dict[str, dict[str, int]]:
    """Rows as counted by the last VACUUM ANALYZE (exact here: nothing changed since)."""
    sizes: dict[str, dict[str, int]] = {}
    for table in ("operations", "operation_events", "audit_events", "clusters"):
        row = await pool.fetchrow(
            "SELECT pg_table_size($1) AS data, pg_indexes_size($1) AS indexes, pg_total_relation_size($1) AS total",
            table,
        )
        rows = await pool.fetchval("SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass", table)
        sizes[table] = {"rows": int(rows), **{k: int(v) for k, v in dict(row).items()}}
    return sizes


# --- the run ------------------------------------------------------------------------------------


async def templates(stack: Stack, base: str, pool: Any) -> tuple[Templates, str, str]:
    headers = {"Authorization": f"Bearer {stack.key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as http:
        response = await http.post("/v1/clusters", json=deploy_document(f"template-{uuid.uuid4().hex[:6]}"))
        assert response.status_code == 202, response.text
        op_id = response.json()["data"]["operationId"]
        await http.get("/v1/audit/events?pageSize=1")  # waits for the POST's audit row
    op = await pool.fetchrow(
        "SELECT workflow_input::text, metadata::text, cluster_id FROM operations WHERE id = $1", op_id
    )
    cluster = await pool.fetchrow("SELECT * FROM clusters WHERE id = $1", op["cluster_id"])
    details = await pool.fetchval(
        "SELECT details::text FROM audit_events WHERE organization_id = $1 AND action = 'CREATE' LIMIT 1", stack.org
    )
    spec = await pool.fetchval("SELECT spec::text FROM clusters WHERE id = $1", op["cluster_id"])
    shapes = Templates(
        workflow_input=op["workflow_input"],
        metadata=op["metadata"],
        spec=spec,
        audit_details=details or "{}",
        provider=cluster["provider"],
        provisioner_type=cluster["provisioner_type"],
        region=cluster["region"],
        kubernetes_version=cluster["kubernetes_version"],
    )
    return shapes, op_id, str(op["cluster_id"])


async def run(args: argparse.Namespace, workdir: Path, dsn: str, temporal: str) -> dict[str, Any]:
    await migrate(dsn)
    pool = await create_pool(dsn, 1, 4)
    orgs = [Org(await create_organization(pool, f"growth-{i}"), share) for i, share in enumerate(ORG_SHARES)]
    for org in orgs:
        org.key_id, key = await create_api_key(pool, org.id, "bench", "owner")
        if org is orgs[0]:
            big_key = key
    pg_version = await pool.fetchval("SHOW server_version")
    env_extra = {k: v for k, v in os.environ.items() if k.startswith("CLUSTERFLOW_") and k != "CLUSTERFLOW_API_PORT"}
    # Enqueues start onto a task queue nobody polls: the figure is the enqueue alone.
    stack = Stack(workdir, dsn, temporal, big_key, env_extra | {"CLUSTERFLOW_TASK_QUEUE": "growth-sink"})
    stack.org = orgs[0].id
    rng = random.Random(21)
    report: dict[str, Any] = {"sizes": {}}
    started = time.monotonic()
    try:
        api, base = await stack.api("api")
        shapes, template_op, template_cluster = await templates(stack, base, pool)
        orgs[0].operation_ids.append(template_op)
        orgs[0].cluster_ids.append(template_cluster)
        loaded = 0
        long_operation: str | None = None
        for size in (0, *args.sizes):
            step = time.monotonic()
            load_seconds: dict[str, float] = {}
            if size > loaded:
                history = History(rng, orgs, size - loaded, shapes, long_operation is None)
                long_operation = long_operation or history.long_operation_id
                load_seconds = await load(dsn, history)
                loaded = size
                del history
            print(f"== {size} operations (loaded in {load_seconds})", flush=True)
            figures = await measure(stack, base, api.pid, pool, orgs[0], long_operation, args.requests, size)
            figures["load_seconds"] = load_seconds
            figures["table_sizes"] = await table_sizes(pool)
            figures["largest_org_operations"] = len(orgs[0].operation_ids)
            figures["step_seconds"] = round(time.monotonic() - step, 1)
            report["sizes"][str(size)] = figures
        report["explain"] = await explain_all(pool, orgs[0], long_operation)
    finally:
        stack.stop_all()
        await pool.close()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["machine"] = {**machine(), "postgresql": pg_version}
    return report


def verdicts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sizes = sorted(int(s) for s in report["sizes"] if int(s) > 0)
    small, large = str(sizes[0]), str(sizes[-1])
    by = report["sizes"]
    out: dict[str, dict[str, Any]] = {}
    for name in LIST_MEASURES:
        if name not in by[small] or name not in by[large]:
            continue
        ratio = by[large][name]["p99_ms"] / max(by[small][name]["p99_ms"], 1e-9)
        out[name] = {
            "ratio": round(ratio, 2),
            "meets": ratio <= GOAL_RATIO,
            "goal": f"p99 at {large} <= 1.5x at {small}",
        }
    g_small, g_large = by[small]["audit_export"]["rss_growth_kb"], by[large]["audit_export"]["rss_growth_kb"]
    out["audit_export_memory"] = {
        "ratio": round(g_large / max(g_small, 1), 2),
        # Constant: the peak's growth at the largest size within 1.5x (or 16 MB) of the smallest's.
        "meets": g_large <= max(GOAL_RATIO * g_small, g_small + 16_384),
        "goal": "peak RSS growth during the export does not grow with the rows",
    }
    e_empty, e_large = by["0"]["enqueue"]["p99_ms"], by[large]["enqueue"]["p99_ms"]
    out["enqueue"] = {
        "ratio": round(e_large / max(e_empty, 1e-9), 2),
        "meets": e_large <= GOAL_RATIO * e_empty,
        "goal": f"p99 at {large} <= 1.5x on the empty database",
    }
    return out


def charts(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(s) for s in report["sizes"] if int(s) > 0)
    names: list[str] = []
    for name in (*LIST_MEASURES, "enqueue"):
        if not all(name in report["sizes"][str(s)] for s in sizes):
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for q, style in (("p99_ms", "o-"), ("p50_ms", "s--")):
            ax.plot(sizes, [report["sizes"][str(s)][name][q] for s in sizes], style, label=q.replace("_ms", ""))
        empty = report["sizes"]["0"].get(name)
        if empty:
            ax.axhline(empty["p99_ms"], color="grey", linestyle=":", label="p99, empty database")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("operations in the database")
        ax.set_ylabel("latency, ms")
        ax.set_title(f"{name} (growth bench)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"growth-{name}.png", dpi=90)
        plt.close(fig)
        names.append(f"growth-{name}.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, [report["sizes"][str(s)]["audit_export"]["rss_peak_kb"] / 1024 for s in sizes], "o-", label="peak")
    ax.plot(
        sizes, [report["sizes"][str(s)]["audit_export"]["rss_before_kb"] / 1024 for s in sizes], "s--", label="before"
    )
    ax.set_xscale("log")
    ax.set_xlabel("operations in the database")
    ax.set_ylabel("API process RSS during the audit export, MB")
    ax.set_title("audit_export memory (growth bench)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "growth-audit_export_memory.png", dpi=90)
    plt.close(fig)
    names.append("growth-audit_export_memory.png")
    return names


def markdown(r: dict[str, Any]) -> str:
    sizes = sorted(r["sizes"], key=int)
    mc = r["machine"]
    lines = [
        "# Growth: the API on a database with a history",
        "",
        f"{r['date']}, {r['elapsed_s']} s in all. Sizes (operations): {', '.join(sizes)}; ~25 events and "
        f"{AUDIT_PER_OPERATION} audit rows per operation, ~{OPS_PER_CLUSTER} operations per cluster, 20 "
        "organizations (55%, 25%, 12%, 17 x 0.5%); measured as the largest organization, one request at a time, "
        f"{r['requests']} requests per measure. Machine: {mc['cpu']} x {mc['cpus']}, PostgreSQL {mc['postgresql']} "
        f"(embedded, shared_buffers 128MB), load average at start {mc['loadavg_at_start']}. "
        f"Reproduce: `{r['reproduce']}`.",
        "",
        "p50 / p99 ms per size:",
        "",
        "| measure | " + " | ".join(sizes) + " | p99 ratio | verdict |",
        "|---|" + "---|" * (len(sizes) + 2),
    ]
    v = r["verdicts"]
    for name in (*LIST_MEASURES, "enqueue"):
        cells = []
        for s in sizes:
            f = r["sizes"][s].get(name)
            cells.append(f"{f['p50_ms']} / {f['p99_ms']}" if f else "-")
        verdict = v.get(name)
        tail = f"{verdict['ratio']} | {'meets' if verdict['meets'] else 'MISSES'}" if verdict else " | "
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {tail} |")
    exp = [r["sizes"][s]["audit_export"] for s in sizes]
    lines += [
        "| audit_export rows | " + " | ".join(str(e["rows"]) for e in exp) + " | | |",
        "| audit_export rows/s | " + " | ".join(str(e["rows_per_second"]) for e in exp) + " | | |",
        "| audit_export API RSS before -> peak, MB | "
        + " | ".join(f"{e['rss_before_kb'] // 1024} -> {e['rss_peak_kb'] // 1024}" for e in exp)
        + f" | {v['audit_export_memory']['ratio']} (growth) | "
        f"{'meets' if v['audit_export_memory']['meets'] else 'MISSES'} |",
        "",
        "Goals: "
        + "; ".join(f"{k}: {x['goal']}" for k, x in v.items() if k in ("enqueue", "audit_export_memory"))
        + f"; every list and read: p99 at the largest size <= {GOAL_RATIO}x at the smallest.",
        "",
        "Depths of the deep measures (rows skipped by the token, audit page number, event cursor): "
        + "; ".join(f"{s}: {r['sizes'][s]['depths']}" for s in sizes),
        "",
        "Load (COPY, then VACUUM ANALYZE) seconds per step: "
        + "; ".join(f"{s}: {r['sizes'][s]['load_seconds']}" for s in sizes if r["sizes"][s]["load_seconds"]),
        "",
        "## Table and index sizes",
        "",
        "| size | table | rows | data MB | indexes MB | total MB | total MB per 1M operations |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sizes[1:]:
        ops = r["sizes"][s]["table_sizes"]["operations"]["rows"]
        for table, t in r["sizes"][s]["table_sizes"].items():
            lines.append(
                f"| {s} | {table} | {t['rows']} | {t['data'] / 2**20:.0f} | {t['indexes'] / 2**20:.0f} | "
                f"{t['total'] / 2**20:.0f} | {t['total'] / 2**20 / (ops / 1e6):.0f} |"
            )
    lines += ["", "## Charts", ""] + [f"![{c}]({c})" for c in r["charts"]]
    lines += ["", f"## EXPLAIN (ANALYZE, BUFFERS) at {sizes[-1]} operations", ""]
    for name, queries in r["explain"].items():
        lines.append(f"### {name}")
        for q in queries:
            lines += ["", "```sql", q["sql"], "```", "", "```", q["plan"], "```", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=lambda v: [int(x) for x in v.split(",")], default=list(SIZES), help="comma-separated"
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per measure and size")
    parser.add_argument("--out", type=Path, default=ROOT / ".clusterflow" / "bench")
    args = parser.parse_args()
    args.sizes = sorted(set(args.sizes))
    args.out.mkdir(parents=True, exist_ok=True)
    with embedded_services("cf-growth-") as services:
        report = asyncio.run(run(args, services.workdir, services.dsn, services.temporal))
    report = {
        "benchmark": "growth",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests": args.requests,
        "reproduce": "make bench-growth, or: python tests/perf/bench_growth.py --sizes "
        + ",".join(str(s) for s in args.sizes)
        + f" --requests {args.requests}",
        **report,
    }
    report["verdicts"] = verdicts(report)
    report["charts"] = charts(report, args.out)
    (args.out / "growth.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "growth.md").write_text(markdown(report))
    print(markdown(report).split("## Charts")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
