"""The control plane against raw Temporal and PostgreSQL, measured in one run (`make bench`).

Set-up: an embedded PostgreSQL, the embedded Temporal dev server (SQLite file with the WAL
pragmas `make run` uses), one real `clusterflow api` process, one real `clusterflow worker`, the
`local` provider at full speed (CLUSTERFLOW_LOCAL_PHASE_SECONDS=0) and rate limits raised out of
the way. Beside each figure, its baseline from the same run:

1. enqueue: POST /v1/clusters at 20 concurrent clients (wrk in its own process, else httpx) vs
   raw `client.start_workflow` of the same workflow and input (both onto a task queue nobody
   polls, so only the enqueue is measured);
2. throughput: deploys completed per second, N deploys 50 in flight, vs bare Temporal workflows
   running as many no-op activities as a deploy runs (counted from a deploy's history);
4. polling: GET /v1/operations/{id} requests/s of one API process at 50 connections, generated
   by `wrk` in its own process (else a multi-process client), with the API's Temporal connection
   routed through a byte-counting proxy to show that no request reaches Temporal;
5. approval: POST /v1/operations/{id}/approval (a Workflow Update) p50/p99 vs a raw Update on a
   bare workflow waiting the same way and then running a deploy's worth of no-op activities,
   as many waiting on a worker caching as many workflows; one at a time (the approval alone)
   and back to back (with the deploys it starts running). Beside them, to say where the
   difference goes: the same Update sent straight to our workflows, and any request's floor
   (a cached GET through the same client);
6. memory: worker RSS growth per operation with N operations waiting for approval.

(3, stream latency, is `bench_stream_latency.py`.) Reports: `.clusterflow/bench/control_plane.*`.

    python tests/perf/bench_control_plane.py [--deploys 2000] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf.bench_stream_latency import machine, percentile, process_cpu_seconds
from tests.perf.services import embedded_services

from clusterflow.contracts.operations import DecideInput, DecisionResult
from clusterflow.devstack.postgres import free_port
from clusterflow.records.db import create_pool
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import create_api_key, create_organization

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "REJECTED")
# The issue's sizes; `make bench` runs them all.
SECTIONS = ("enqueue", "throughput", "polling", "approval")
ISSUE_COUNTS = {"enqueues": 1000, "deploys": 2000, "waiting": 2000, "approvals": 200}
TARGETS = {
    "enqueue_p50_ratio_max": 1.5,
    "enqueue_per_second_min": 150.0,
    "throughput_ratio_min": 0.75,
    "polling_per_second_min": 2000.0,
    "approve_p50_ms_max": 15.0,
    "rss_per_operation_kb_max": 100.0,
}


def stats(latencies_s: list[float]) -> dict[str, float | int]:
    ms = [v * 1000 for v in latencies_s]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def deploy_document(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "clusterflow.dev/v1",
        "kind": "K8sCluster",
        "spec": {
            "clusterName": name,
            "provider": "local",
            "region": "local-1",
            "provisioner": {"type": "local", "local": {"kubernetesVersion": "1.31", "phaseSeconds": 0}},
            "clusterSpec": {
                "controlPlane": {"nodeGroup": {"name": "cp", "machineTypes": ["small"], "minNode": 1, "maxNode": 1}},
                "dataPlane": {
                    "nodeGroups": [{"name": "workers", "machineTypes": ["medium"], "minNode": 1, "maxNode": 3}]
                },
            },
        },
    }


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- processes --------------------------------------------------------------------------------


class Stack:
    def __init__(self, workdir: Path, dsn: str, temporal: str, key: str, env_extra: dict[str, str]) -> None:
        self.workdir, self.dsn, self.temporal, self.key = workdir, dsn, temporal, key
        self.env_extra = env_extra
        self.org = ""
        self.processes: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.dsn,
            "TEMPORAL_ADDRESS": self.temporal,
            "CLUSTERFLOW_TASK_QUEUE": "bench",
            "CLUSTERFLOW_LOCAL_PHASE_SECONDS": "0",
            "CLUSTERFLOW_LOG_LEVEL": "WARNING",
            "CLUSTERFLOW_RATE_LIMIT_WRITES_PER_SECOND": "1000000",
            "CLUSTERFLOW_RATE_LIMIT_DELETES_PER_SECOND": "1000000",
            "CLUSTERFLOW_RATE_LIMIT_READS_PER_SECOND": "1000000",
            "CLUSTERFLOW_STATE_DIR": str(self.workdir / "state"),
            **self.env_extra,
            **extra,
        }

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
            )
        self.processes.append(process)
        return process

    async def api(self, name: str, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        process = self.spawn(
            name, ["-m", "clusterflow.cli.main", "api"], self.env(CLUSTERFLOW_API_PORT=str(port), **extra)
        )
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as probe:
            for _ in range(600):
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.workdir / name}.log")
                try:
                    if (await probe.get(f"{base}/healthz")).status_code == 200:
                        return process, base
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} did not start")

    def worker(self, name: str = "worker", **extra: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, ["-m", "clusterflow.cli.main", "worker"], self.env(**extra))

    @staticmethod
    def stop(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            self.stop(process)


# --- 1. enqueue -------------------------------------------------------------------------------


async def closed_loop(count: int, concurrency: int, call: Any) -> tuple[list[float], float]:
    latencies: list[float] = []
    todo = iter(range(count))

    async def client() -> None:
        for i in todo:
            started = time.monotonic()
            await call(i)
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.monotonic() - started


async def bench_enqueue(stack: Stack, client: Client, count: int) -> dict[str, Any]:
    # Both sides start onto a task queue nobody polls: the figure is the enqueue alone.
    api, base = await stack.api("api-enqueue", CLUSTERFLOW_TASK_QUEUE="bench-sink")
    headers = {"Authorization": f"Bearer {stack.key}"}
    run = uuid.uuid4().hex[:6]
    try:
        if shutil.which("wrk"):
            # wrk in its own process: the load generator takes no CPU from the bench process.
            # It runs for a time, not a count: about `count` requests at the rate seen in warm-up.
            url, document = f"{base}/v1/clusters", deploy_document("@NAME@")
            warm = await run_wrk(url, stack.key, 20, 3, post=document, prefix=f"w{run}")
            seconds = max(5, round(count / max(warm["per_second"], 1)))
            measured = await run_wrk(url, stack.key, 20, seconds, post=document, prefix=f"m{run}")
            assert measured["errors"] == 0 and warm["errors"] == 0, (warm, measured)
            api_side: dict[str, Any] = {
                "p50_ms": measured["p50_ms"],
                "p99_ms": measured["p99_ms"],
                "per_second": measured["per_second"],
                "count": measured["requests"],
                "generator": measured["generator"],
            }
            count = measured["requests"]
        else:
            async with httpx.AsyncClient(
                base_url=base, headers=headers, limits=httpx.Limits(max_connections=40)
            ) as http:

                async def post(i: int) -> None:
                    response = await http.post("/v1/clusters", json=deploy_document(f"enq-{run}-{i}"))
                    assert response.status_code == 202, response.text

                await closed_loop(40, 20, lambda i: post(10_000 + i))  # warm-up
                api_latencies, api_elapsed = await closed_loop(count, 20, post)
            api_side = stats(api_latencies) | {
                "per_second": round(count / api_elapsed, 1),
                "generator": "httpx in the bench process (wrk not installed)",
            }
    finally:
        stack.stop(api)
    sample = await stack_sample_input(stack)

    async def start(i: int) -> None:
        await client.start_workflow("ClusterDeploy", sample, id=f"raw-{run}-{i}", task_queue="bench-sink-raw")

    await closed_loop(40, 20, lambda i: start(10_000 + i))
    raw_latencies, raw_elapsed = await closed_loop(count, 20, start)
    raw_stats = stats(raw_latencies)
    return {
        "clients": 20,
        "requests": count,
        "api": api_side,
        "raw_start_workflow": raw_stats | {"per_second": round(count / raw_elapsed, 1)},
        "p50_ratio": round(float(api_side["p50_ms"]) / float(raw_stats["p50_ms"]), 2),
    }


async def stack_sample_input(stack: Stack) -> dict[str, Any]:
    pool = await create_pool(stack.dsn, 1, 2)
    try:
        row = await pool.fetchval(
            "SELECT workflow_input FROM operations WHERE workflow_type = 'ClusterDeploy' "
            "ORDER BY created_at DESC LIMIT 1"
        )
    finally:
        await pool.close()
    return dict(row)


# --- 2. throughput ----------------------------------------------------------------------------


async def wait_terminal(pool: Any, ids: set[str], done: dict[str, asyncio.Event], stop: asyncio.Event) -> None:
    while not stop.is_set():
        pending = [i for i in ids if not done[i].is_set()]
        if pending:
            rows = await pool.fetch(
                "SELECT id, status FROM operations WHERE id = ANY($1::text[]) AND status = ANY($2::text[])",
                pending,
                list(TERMINAL),
            )
            for row in rows:
                done[row["id"]].set()
        await asyncio.sleep(0.02)


async def bench_throughput(stack: Stack, base: str, client: Client, count: int, activities: int) -> dict[str, Any]:
    pool = await create_pool(stack.dsn, 1, 4)
    headers = {"Authorization": f"Bearer {stack.key}"}
    ids: set[str] = set()
    done: dict[str, asyncio.Event] = {}
    statuses: dict[str, int] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(wait_terminal(pool, ids, done, stop))
    run = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=httpx.Limits(max_connections=60)) as http:

        async def deploy(i: int) -> None:
            response = await http.post("/v1/clusters", json=deploy_document(f"tp-{run}-{i}"))
            assert response.status_code == 202, response.text
            op = response.json()["data"]["operationId"]
            done[op] = asyncio.Event()
            ids.add(op)
            await done[op].wait()

        latencies, elapsed = await closed_loop(count, 50, deploy)
    stop.set()
    await watcher
    for row in await pool.fetch(
        "SELECT status, count(*) FROM operations WHERE id = ANY($1::text[]) GROUP BY 1", list(ids)
    ):
        statuses[row["status"]] = row["count"]
    await pool.close()

    async def bare(i: int) -> None:
        await client.execute_workflow("BareOperation", activities, id=f"bare-{run}-{i}", task_queue="bench-baseline")

    bare_latencies, bare_elapsed = await closed_loop(count, 50, bare)
    rate, bare_rate = count / elapsed, count / bare_elapsed
    return {
        "operations": count,
        "in_flight": 50,
        "activities_per_operation": activities,
        "statuses": statuses,
        "api": {"per_second": round(rate, 1), "operation": stats(latencies)},
        "bare_temporal": {"per_second": round(bare_rate, 1), "operation": stats(bare_latencies)},
        "ratio": round(rate / bare_rate, 2),
    }


# --- 4. polling -------------------------------------------------------------------------------


class CountingProxy:
    """TCP forwarder API -> Temporal that counts the bytes the API sends."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.sent = 0
        self.port = free_port()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        self.sent += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


def _httpx_load(url: str, key: str, connections: int, seconds: float, out: Any) -> None:
    async def main() -> tuple[int, list[float]]:
        latencies: list[float] = []
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:

            async def one() -> None:
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    assert (await http.get(url)).status_code == 200
                    latencies.append(time.monotonic() - started)

            await asyncio.gather(*(one() for _ in range(connections)))
        return len(latencies), latencies

    out.put(asyncio.run(main()))


# Each wrk thread POSTs documents with names of its own: "<prefix>-<thread>-<counter>".
WRK_POST_SCRIPT = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  counter = 0
  template = args[1]
  prefix = args[2] .. "-" .. tid .. "-"
  headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end
end
function request()
  counter = counter + 1
  local body = string.gsub(template, "@NAME@", prefix .. counter)
  return wrk.format("POST", nil, headers, body)
end
"""


async def run_wrk(
    url: str, key: str, connections: int, seconds: float, post: dict[str, Any] | None = None, prefix: str = ""
) -> dict[str, Any]:
    """wrk against `url` (GET, or POST of `post` with "@NAME@" replaced by a unique name)."""
    wrk = shutil.which("wrk")
    assert wrk
    extra: list[str] = []
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_POST_SCRIPT)
    extra = ["-s", script.name, url, "--", json.dumps(post), prefix] if post is not None else [url]
    try:
        proc = await asyncio.create_subprocess_exec(
            wrk, "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
            "-H", f"Authorization: Bearer {key}", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out = (await proc.communicate())[0].decode()
    finally:
        os.unlink(script.name)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {
        "generator": "wrk -t2 (separate process)",
        "requests": requests,
        "per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


async def load(url: str, key: str, connections: int, seconds: float) -> dict[str, Any]:
    if shutil.which("wrk"):
        return await run_wrk(url, key, connections, seconds)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_httpx_load, args=(url, key, connections // 2, seconds, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [await asyncio.to_thread(queue.get) for _ in procs]
    for p in procs:
        p.join()
    latencies = [v for _, lat in results for v in lat]
    s = stats(latencies)
    return {
        "generator": "2 httpx processes (wrk not installed)",
        "requests": len(latencies),
        "per_second": round(len(latencies) / seconds, 1),
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
        "errors": 0,
    }


async def bench_polling(stack: Stack, operation_id: str, seconds: float) -> dict[str, Any]:
    proxy = CountingProxy(stack.temporal)
    await proxy.start()
    api, base = await stack.api("api-polling", TEMPORAL_ADDRESS=f"127.0.0.1:{proxy.port}")
    try:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {stack.key}"}) as http:
            for _ in range(50):  # warm-up, and the Temporal connection opened (readyz pings it)
                assert (await http.get(f"/v1/operations/{operation_id}")).status_code == 200
            await http.get("/readyz")
        await asyncio.sleep(0.5)
        sent_before, cpu_before = proxy.sent, process_cpu_seconds(api.pid)
        result = await load(f"{base}/v1/operations/{operation_id}", stack.key, 50, seconds)
        temporal_bytes = proxy.sent - sent_before
        api_cpu = process_cpu_seconds(api.pid) - cpu_before
    finally:
        stack.stop(api)
        proxy.server.close()
    return result | {
        "connections": 50,
        "seconds": seconds,
        "api_processes": 1,
        "api_cpu_share": round(api_cpu / seconds, 2),
        # On a shared machine the API rarely gets a whole CPU: requests per CPU-second it did get.
        "per_api_cpu_second": round(result["requests"] / max(api_cpu, 1e-9)),
        "bytes_api_sent_to_temporal_during_run": temporal_bytes,
        "temporal_bytes_per_request": round(temporal_bytes / max(1, result["requests"]), 4),
    }


# --- 5 and 6. approval and memory ---------------------------------------------------------------


async def wait_status(pool: Any, operation_id: str, statuses: tuple[str, ...], seconds: float = 120.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = await pool.fetchval("SELECT status FROM operations WHERE id = $1", operation_id)
        if status in statuses:
            return str(status)
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{operation_id} did not reach {statuses}")


async def bench_approval(
    stack: Stack,
    base: str,
    client: Client,
    worker: subprocess.Popen[bytes],
    waiting: int,
    approvals: int,
    activities: int,
    action: str = "APPROVE",
) -> dict[str, Any]:
    """Approvals two ways, each beside raw Updates on bare workflows that, once decided, run as
    many no-op activities as a deploy does:

    - one at a time: the next approval waits (unmeasured) until the previous operation is
      done, so the figure is the approval alone;
    - back to back: each approved deploy runs while the next approval is measured, so the
      figure includes the load the approvals themselves start.
    """
    headers = {"Authorization": f"Bearer {stack.key}"}
    pool = await create_pool(stack.dsn, 1, 4)
    run = uuid.uuid4().hex[:6]
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=httpx.Limits(max_connections=30)) as http:
        org_id = stack.org
        r = await http.put(f"/v1/organizations/{org_id}/approval-policy", json={"clusterDeploy": True})
        assert r.status_code == 200, r.text
        await asyncio.sleep(1.0)
        rss_before = rss_kb(worker.pid)
        tokens: dict[str, str] = {}

        async def deploy(i: int) -> None:
            response = await http.post("/v1/clusters", json=deploy_document(f"ap-{run}-{i}"))
            assert response.status_code == 202, response.text
            data = response.json()["data"]
            tokens[data["operationId"]] = data["approvalToken"]

        await closed_loop(waiting, 20, deploy)
        for _ in range(1200):
            count = await pool.fetchval(
                "SELECT count(*) FROM operations WHERE id = ANY($1::text[]) AND status = 'AWAITING_APPROVAL'",
                list(tokens),
            )
            if count == len(tokens):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        rss_after = rss_kb(worker.pid)

        # Random samples: some are still cached by the worker, others must replay first.
        # Three disjoint samples (one at a time, back to back, straight to the workflow): with fewer
        # than 3 x approvals waiting, each takes a third.
        approvals = max(1, min(approvals, len(tokens) // 3))
        sample = random.Random(7).sample(list(tokens), 3 * approvals)
        samples = {"one_at_a_time": sample[:approvals], "back_to_back": sample[approvals : 2 * approvals]}
        direct_sample = sample[2 * approvals :]
        for protocol, chosen in samples.items():
            measured: list[float] = []
            for op in chosen:
                started = time.monotonic()
                response = await http.post(
                    f"/v1/operations/{op}/approval", json={"action": action, "token": tokens[op]}
                )
                measured.append(time.monotonic() - started)
                assert response.status_code == 200, response.text
                if protocol == "one_at_a_time":
                    await wait_status(pool, op, TERMINAL)
            results[protocol] = {"api": stats(measured)}
        # The same Update sent straight to our workflows (no HTTP, no API): what separates the API's
        # overhead from the workflow's own cost beside a bare one.
        direct: list[float] = []
        for op in direct_sample:
            decision = DecideInput(
                token_sha256=hashlib.sha256(tokens[op].encode()).hexdigest(),
                action=action,
                actor="bench",
                actor_role="owner",
            )
            started = time.monotonic()
            await client.get_workflow_handle(op).execute_update("decide", decision, result_type=DecisionResult)
            direct.append(time.monotonic() - started)
            await wait_status(pool, op, TERMINAL)
        if direct:
            results["one_at_a_time"]["direct_update"] = stats(direct)
        # The cost of any request through this client and the API's HTTP stack: a GET of one
        # operation, one at a time, answered from the API's cache (no database, no Temporal).
        floor: list[float] = []
        for _ in range(approvals):
            started = time.monotonic()
            response = await http.get(f"/v1/operations/{sample[0]}")
            floor.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
        results["one_at_a_time"]["http_floor"] = stats(floor)
        await http.put(f"/v1/organizations/{org_id}/approval-policy", json={"clusterDeploy": False})
    await pool.close()

    # The baseline faces what the API's approvals faced: as many bare workflows waiting, on a
    # worker caching as many workflows, sampled the same way, so an evicted workflow's replay is
    # in both figures.
    bare_ids = [f"bare-ap-{run}-{i}" for i in range(waiting)]

    async def bare(i: int) -> None:
        await client.start_workflow("BareApproval", activities, id=bare_ids[i], task_queue="bench-baseline")

    await closed_loop(waiting, 20, bare)
    # As the API's side waits for every operation to await approval: the baseline worker has run
    # the first task of the workflows started last (an Update on a workflow whose first task is
    # still queued would wait for the queue).
    for workflow_id in bare_ids[-20:]:
        for _ in range(3000):
            if (await client.get_workflow_handle(workflow_id).describe()).history_length >= 4:
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)
    bare_sample = random.Random(8).sample(bare_ids, min(2 * approvals, len(bare_ids)))
    bare_samples = {"one_at_a_time": bare_sample[:approvals], "back_to_back": bare_sample[approvals:]}
    for protocol, chosen_ids in bare_samples.items():
        raw: list[float] = []
        for workflow_id in chosen_ids:
            handle = client.get_workflow_handle(workflow_id)
            started = time.monotonic()
            await handle.execute_update("decide", action)
            raw.append(time.monotonic() - started)
            if protocol == "one_at_a_time":
                await handle.result()
        if protocol == "one_at_a_time":
            cached_updates = await _cached_raw_updates(client, run, approvals, activities)
            results[protocol]["raw_update_cached"] = stats(cached_updates)
        api_s, raw_s = results[protocol]["api"], stats(raw)
        results[protocol] |= {
            "raw_update": raw_s,
            "p50_ratio": round(float(api_s["p50_ms"]) / float(raw_s["p50_ms"]), 2),
        }
    return {
        "approval": {"approvals": approvals, "action": action, "activities_after": activities, **results},
        "memory": {
            "operations_waiting": waiting,
            "worker_rss_before_kb": rss_before,
            "worker_rss_after_kb": rss_after,
            "per_operation_kb": round((rss_after - rss_before) / waiting, 1),
            "note": "the Temporal worker caches at most max_cached_workflows (default 1000) workflows; "
            "beyond that, waiting workflows live only in Temporal's history",
        },
    }


async def _cached_raw_updates(client: Client, run: str, count: int, activities: int) -> list[float]:
    """Raw Updates one at a time on bare workflows just started, so still in the worker's cache:
    the Update's own cost, without any replay."""
    handles = [
        await client.start_workflow(
            "BareApproval", activities, id=f"bare-cached-{run}-{i}", task_queue="bench-baseline"
        )
        for i in range(count)
    ]
    await asyncio.sleep(1.0)
    measured: list[float] = []
    for handle in handles:
        started = time.monotonic()
        await handle.execute_update("decide", "APPROVE")
        measured.append(time.monotonic() - started)
        await handle.result()
    return measured


# --- the run ---------------------------------------------------------------------------------


async def count_activities(client: Client, operation_id: str) -> int:
    handle = client.get_workflow_handle(operation_id)
    count = 0
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            count += 1
    return count


async def run(args: argparse.Namespace, workdir: Path, dsn: str, temporal: str) -> dict[str, Any]:
    await migrate(dsn)
    pool = await create_pool(dsn, 1, 2)
    org = await create_organization(pool, f"bench-{uuid.uuid4().hex[:8]}")
    _, key = await create_api_key(pool, org, "bench", "owner")
    pg_version = await pool.fetchval("SHOW server_version")
    await pool.close()
    env_extra = {k: v for k, v in os.environ.items() if k.startswith("CLUSTERFLOW_") and k != "CLUSTERFLOW_API_PORT"}
    stack = Stack(workdir, dsn, temporal, key, env_extra)
    stack.org = org
    client = await Client.connect(temporal)
    report: dict[str, Any] = {}
    n = lambda full: max(20, int(full * args.scale))  # noqa: E731
    counts = {
        "enqueues": n(args.enqueues),
        "deploys": n(args.deploys),
        "waiting": n(args.waiting),
        "approvals": n(args.approvals),
    }
    try:
        cached = os.environ.get("CLUSTERFLOW_WORKER_MAX_CACHED_WORKFLOWS", "1000")
        stack.spawn(
            "baseline-worker", ["-m", "tests.perf.baseline", temporal, "bench-baseline", "200", cached], stack.env()
        )
        worker = stack.worker()
        _, base = await stack.api("api")
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            response = await http.post("/v1/clusters", json=deploy_document(f"warm-{uuid.uuid4().hex[:6]}"))
            assert response.status_code == 202, response.text
            warm = response.json()["data"]["operationId"]
            for _ in range(600):
                record = (await http.get(f"/v1/operations/{warm}")).json()["data"]
                if record["status"] in TERMINAL:
                    break
                await asyncio.sleep(0.1)
            assert record["status"] == "SUCCEEDED", record
        activities = await count_activities(client, warm)

        started = time.monotonic()
        if "enqueue" in args.only:
            report["enqueue"] = await bench_enqueue(stack, client, counts["enqueues"])
            print("enqueue", json.dumps(report["enqueue"]), flush=True)
        if "throughput" in args.only:
            report["throughput"] = await bench_throughput(stack, base, client, counts["deploys"], activities)
            print("throughput", json.dumps(report["throughput"]), flush=True)
        if "polling" in args.only:
            report["polling"] = await bench_polling(stack, warm, args.poll_seconds)
            print("polling", json.dumps(report["polling"]), flush=True)
        if "approval" in args.only:
            report |= await bench_approval(
                stack,
                base,
                client,
                worker,
                counts["waiting"],
                counts["approvals"],
                activities,
                args.decision,
            )
            print("approval", json.dumps(report["approval"]), json.dumps(report["memory"]), flush=True)
        report["elapsed_s"] = round(time.monotonic() - started, 1)
    finally:
        stack.stop_all()
    if set(args.only) != set(SECTIONS):
        print(json.dumps(report, indent=2))
        sys.exit(0)  # a partial run (tuning): printed, not written as the report
    e, t, p, a, m = (report[k] for k in ("enqueue", "throughput", "polling", "approval", "memory"))
    verdicts = {
        "enqueue_p50_ratio": e["p50_ratio"] <= TARGETS["enqueue_p50_ratio_max"],
        "enqueue_per_second": e["api"]["per_second"] >= TARGETS["enqueue_per_second_min"],
        "throughput_ratio": t["ratio"] >= TARGETS["throughput_ratio_min"],
        "polling_per_second": p["per_second"] >= TARGETS["polling_per_second_min"],
        "polling_no_temporal_call": p["temporal_bytes_per_request"] < 1,
        "approve_p50": a["one_at_a_time"]["api"]["p50_ms"] <= TARGETS["approve_p50_ms_max"],
        "rss_per_operation": m["per_operation_kb"] <= TARGETS["rss_per_operation_kb_max"],
    }
    return {
        "benchmark": "control_plane",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": args.scale,
        "counts": counts,
        "counts_in_the_issue": ISSUE_COUNTS,
        "machine": {**machine(), "postgresql": pg_version},
        "reproduce": "make bench, or: python tests/perf/bench_control_plane.py "
        + " ".join(f"--{k} {v}" for k, v in counts.items()),
        **report,
        "targets": TARGETS,
        "meets": verdicts,
    }


def markdown(r: dict[str, Any]) -> str:
    e, t, p, a, m = (r[k] for k in ("enqueue", "throughput", "polling", "approval", "memory"))
    a1, a2 = a["one_at_a_time"], a["back_to_back"]
    ok = {k: ("meets" if v else "MISSES") for k, v in r["meets"].items()}
    mc = r["machine"]
    lines = [
        "# Control plane beside raw Temporal and PostgreSQL",
        "",
        f"{r['date']}, {r['elapsed_s']} s. Counts {r['counts']} (the issue's: {r['counts_in_the_issue']}). "
        f"Machine: {mc['cpu']} x {mc['cpus']}, {mc['platform']}, Python {mc['python']}, "
        f"PostgreSQL {mc['postgresql']}, load average at start {mc['loadavg_at_start']}. "
        f"Reproduce: `{r['reproduce']}`.",
        "",
        "| measure | clusterflow | baseline (same run) | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
        f"| 1. enqueue, {e['clients']} clients, {e['requests']} requests: p50 / p99 ms | "
        f"{e['api']['p50_ms']} / {e['api']['p99_ms']} | raw start_workflow {e['raw_start_workflow']['p50_ms']} / "
        f"{e['raw_start_workflow']['p99_ms']} | {e['p50_ratio']} | p50 ratio <= 1.5 | {ok['enqueue_p50_ratio']} |",
        f"| 1. enqueue throughput /s | {e['api']['per_second']} | {e['raw_start_workflow']['per_second']} | | "
        f">= 150 | {ok['enqueue_per_second']} |",
        f"| 2. {t['operations']} deploys, {t['in_flight']} in flight: completed /s | {t['api']['per_second']} | "
        f"bare workflows of {t['activities_per_operation']} no-op activities {t['bare_temporal']['per_second']} | "
        f"{t['ratio']} | >= 0.75 | {ok['throughput_ratio']} |",
        f"| 4. GET /v1/operations/{{id}}, {p['connections']} connections, 1 API process: req/s | "
        f"{p['per_second']} (p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms) | | | >= 2000 | "
        f"{ok['polling_per_second']} |",
        f"| 4. the same per CPU-second the API process got | {p['per_api_cpu_second']} | | | | |",
        f"| 4. bytes the API sent to Temporal during {p['requests']} GETs | "
        f"{p['bytes_api_sent_to_temporal_during_run']} "
        f"({p['temporal_bytes_per_request']} per request) | | | no call per request | "
        f"{ok['polling_no_temporal_call']} |",
        f"| 5. approve (Workflow Update through the API), {a['approvals']} one at a time: p50 / p99 ms | "
        f"{a1['api']['p50_ms']} / {a1['api']['p99_ms']} | raw execute_update {a1['raw_update']['p50_ms']} / "
        f"{a1['raw_update']['p99_ms']} | {a1['p50_ratio']} | p50 < 15 ms | {ok['approve_p50']} |",
        f"| 5. the same Update sent straight to our workflows (no HTTP, no API), one at a time | "
        f"{a1['direct_update']['p50_ms']} / {a1['direct_update']['p99_ms']} | raw execute_update "
        f"{a1['raw_update']['p50_ms']} / {a1['raw_update']['p99_ms']} | "
        f"{round(a1['direct_update']['p50_ms'] / a1['raw_update']['p50_ms'], 2)} | | |",
        f"| 5. raw execute_update on bare workflows just started (all cached), one at a time | "
        f"{a1['raw_update_cached']['p50_ms']} / {a1['raw_update_cached']['p99_ms']} | | | | |",
        f"| 5. any request's floor: GET /v1/operations/{{id}} from the API's cache, one at a time | "
        f"{a1['http_floor']['p50_ms']} / {a1['http_floor']['p99_ms']} | | | | |",
        f"| 5. the same, back to back (each approved deploy runs during the next approval) | "
        f"{a2['api']['p50_ms']} / {a2['api']['p99_ms']} | raw execute_update {a2['raw_update']['p50_ms']} / "
        f"{a2['raw_update']['p99_ms']} | {a2['p50_ratio']} | | |",
        f"| 6. worker RSS per operation, {m['operations_waiting']} awaiting approval: KB | {m['per_operation_kb']} "
        f"({m['worker_rss_before_kb']} -> {m['worker_rss_after_kb']} KB) | | | < 100 KB | {ok['rss_per_operation']} |",
        "",
        f"Deploy statuses: {t['statuses']}. Deploy latency p50 {t['api']['operation']['p50_ms']} ms, "
        f"bare {t['bare_temporal']['operation']['p50_ms']} ms. Load generators: enqueue {e['api']['generator']}, "
        f"polling {p['generator']} (the raw baselines call Temporal from the bench process); "
        f"the API process used {p['api_cpu_share']:.0%} of a CPU. {m['note']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1.0")))
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    parser.add_argument("--enqueues", type=int, default=1000)
    parser.add_argument("--deploys", type=int, default=int(os.environ.get("BENCH_DEPLOYS", "2000")))
    parser.add_argument("--waiting", type=int, default=2000)
    parser.add_argument("--approvals", type=int, default=200)
    parser.add_argument("--decision", default="APPROVE", choices=["APPROVE", "REJECT"])
    parser.add_argument("--only", type=lambda v: v.split(","), default=list(SECTIONS), help="comma-separated sections")
    parser.add_argument("--out", type=Path, default=ROOT / ".clusterflow" / "bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with embedded_services("cf-bench-") as services:
        try:
            report = asyncio.run(run(args, services.workdir, services.dsn, services.temporal))
        finally:
            if os.environ.get("BENCH_KEEP_LOGS"):
                shutil.copytree(
                    services.workdir, args.out / "logs", dirs_exist_ok=True, ignore=shutil.ignore_patterns("pg*")
                )
    (args.out / "control_plane.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "control_plane.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
