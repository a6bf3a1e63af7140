"""Event latency from the database commit to receipt by an SSE client (`make bench`).

Set-up: an embedded PostgreSQL (or `DATABASE_URL`), one real `clusterflow api` process, a
producer process appending events through `append_operation_event` at a fixed rate (the path
workers use), and N SSE clients following the operations over HTTP. Each delivery's latency is
receipt time minus the moment the producer's commit returned (CLOCK_MONOTONIC is system-wide,
so the two processes share a clock). Beside it, the raw LISTEN/NOTIFY round trip on the same
database shows what the stream adds to what PostgreSQL itself costs.

Clients are minimal HTTP/1.1 readers on asyncio streams, not httpx, so the figure measures the
server rather than the client library. Reports go to `.clusterflow/bench/` as JSON and Markdown.

    python tests/perf/bench_stream_latency.py [--streams 100] [--rate 200] [--seconds 10] [--operations 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from clusterflow.devstack.postgres import EmbeddedPostgres, free_port
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import operations
from clusterflow.records.db import connect, create_pool
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import create_api_key, create_organization

ROOT = Path(__file__).resolve().parents[2]
TARGET_P99_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def summary(latencies_s: list[float]) -> dict[str, float | int]:
    ms = [v * 1000 for v in latencies_s]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


# --- producer (its own process, so the clients' work does not delay its commits) -----------


def _produce(dsn: str, operation_ids: list[str], rate: float, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_produce_async(dsn, operation_ids, rate, seconds)))


async def _produce_async(dsn: str, operation_ids: list[str], rate: float, seconds: float) -> list[Any]:
    conn = await connect(dsn)
    committed: list[Any] = []
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        op = operation_ids[i % len(operation_ids)]
        sequence = await operations.append_event(
            conn, op, f"bench/{i}", f"bench event {i}", kind="progress", progress_percentage=None
        )
        committed.append((op, sequence, time.monotonic()))
    for op in operation_ids:
        await operations.finish(conn, op, "SUCCEEDED", "bench done")
    await conn.close()
    return committed


# --- SSE clients ------------------------------------------------------------------------------


async def _follow(port: int, key: str, operation_id: str, received: list[tuple[str, int, float]]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /v1/operations/{operation_id}/events?follow=true&untilTerminal=true HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # headers; the body is chunked
    buffer = b""
    while True:
        size = int((await reader.readline()).strip() or b"0", 16)
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        now = time.monotonic()
        buffer += chunk[:-2]
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if b": " in line and line[:1] != b":")
            if b"id" in fields:
                received.append((operation_id, int(fields[b"id"]), now))
    writer.close()


# --- raw LISTEN/NOTIFY --------------------------------------------------------------------


async def listen_notify_round_trip(dsn: str, count: int, rate: float) -> list[float]:
    listener, sender = await connect(dsn), await connect(dsn)
    arrived: dict[str, float] = {}
    got = asyncio.Event()

    def on_notify(_c: object, _p: int, _ch: str, payload: object) -> None:
        arrived[str(payload)] = time.monotonic()
        got.set()

    await listener.add_listener("cf_bench", on_notify)
    latencies = []
    for i in range(count):
        got.clear()
        sent = time.monotonic()
        await sender.execute("SELECT pg_notify('cf_bench', $1)", str(i))
        await asyncio.wait_for(got.wait(), 5)
        latencies.append(arrived[str(i)] - sent)
        await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - sent)))
    await listener.close()
    await sender.close()
    return latencies


# --- the run --------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0 elsewhere)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


async def run(args: argparse.Namespace, dsn: str, workdir: Path) -> dict[str, Any]:
    await migrate(dsn)
    pool = await create_pool(dsn, 1, 4)
    org = await create_organization(pool, f"bench-{uuid.uuid4().hex[:8]}")
    _, key = await create_api_key(pool, org, "bench", "viewer")
    operation_ids = [new_operation_id() for _ in range(args.operations)]
    async with pool.acquire() as conn:
        for op in operation_ids:
            await operations.insert(
                conn,
                operation_id=op,
                organization_id=org,
                cluster_id=None,
                cluster_name=None,
                operation_type="CLUSTER_DEPLOY",
                requested_by=None,
                idempotency_key=None,
                workflow_type="bench",
                workflow_input={},
            )
    pg_version = await pool.fetchval("SHOW server_version")
    await pool.close()

    raw = await listen_notify_round_trip(dsn, count=int(args.rate * 3), rate=args.rate)

    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # the API connects lazily; nothing is enqueued
        "CLUSTERFLOW_API_PORT": str(port),
        "CLUSTERFLOW_LOG_LEVEL": "WARNING",
        # 100 streams open at once from one key: the per-key limits are not what is measured.
        "CLUSTERFLOW_RATE_LIMIT_READS_PER_SECOND": "1000000",
        "CLUSTERFLOW_RATE_LIMIT_WRITES_PER_SECOND": "1000000",
    }
    api_log = open(workdir / "api.log", "wb")  # noqa: SIM115 - closed in finally
    api = subprocess.Popen(
        [sys.executable, "-m", "clusterflow.cli.main", "api"], env=env, stdout=api_log, stderr=api_log
    )
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as probe:
            while True:
                try:
                    if (await probe.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if api.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not start; see {workdir / 'api.log'}")
                await asyncio.sleep(0.1)

        received: list[tuple[str, int, float]] = []
        streams = [
            asyncio.create_task(_follow(port, key, operation_ids[i % len(operation_ids)], received))
            for i in range(args.streams)
        ]
        await asyncio.sleep(1.0)  # every stream connected and caught up before the clock starts

        api_cpu_before = process_cpu_seconds(api.pid)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        producer = ctx.Process(target=_produce, args=(dsn, operation_ids, args.rate, args.seconds, out))
        started = time.monotonic()
        producer.start()
        committed = await asyncio.to_thread(out.get)
        producer.join()
        await asyncio.wait_for(asyncio.gather(*streams), timeout=60)
        elapsed = time.monotonic() - started
        api_cpu = process_cpu_seconds(api.pid) - api_cpu_before
    finally:
        api.terminate()
        api.wait(30)
        api_log.close()

    commit_times = {(op, seq): t for op, seq, t in committed}
    latencies = [t - commit_times[(op, seq)] for op, seq, t in received if (op, seq) in commit_times]
    expected = len(committed) * args.streams // args.operations
    return {
        "benchmark": "stream_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {
            "streams": args.streams,
            "operations": args.operations,
            "events_per_second": args.rate,
            "seconds": args.seconds,
            "transport": "SSE over HTTP/1.1 (uvicorn, one API process)",
        },
        "machine": {**machine(), "postgresql": pg_version},
        "commit_to_sse_receipt": summary(latencies),
        "raw_listen_notify_round_trip": summary(raw),
        "deliveries": {"expected": expected, "measured": len(latencies), "elapsed_s": round(elapsed, 2)},
        "api_cpu_share": round(api_cpu / elapsed, 3),
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": percentile([v * 1000 for v in latencies], 99) < TARGET_P99_MS,
    }


def markdown(report: dict[str, Any]) -> str:
    p, m = report["parameters"], report["machine"]
    rows = [
        ("commit -> SSE receipt", report["commit_to_sse_receipt"]),
        ("raw LISTEN/NOTIFY round trip", report["raw_listen_notify_round_trip"]),
    ]
    lines = [
        "# Stream latency",
        "",
        f"{report['date']}: {p['streams']} SSE streams over {p['operations']} operations, "
        f"{p['events_per_second']} events/s for {p['seconds']} s ({p['transport']}).",
        "",
        "| measure | deliveries | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {s['count']} | {s['p50_ms']} | {s['p90_ms']} | {s['p99_ms']} | {s['max_ms']} |" for n, s in rows
    ]
    verdict = "meets" if report["meets_target"] else "MISSES"
    lines += [
        "",
        f"Target p99 < {report['target_p99_ms']} ms: {verdict}. Deliveries expected "
        f"{report['deliveries']['expected']}, measured {report['deliveries']['measured']}. "
        f"The API process used {report['api_cpu_share']:.0%} of one CPU.",
        "",
        f"Machine: {m['cpu']} x {m['cpus']}, {m['platform']}, Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}, load average at start {m['loadavg_at_start']}.",
        "",
    ]
    return "\n".join(lines)


def run_loop(main: Any) -> Any:
    """uvloop when installed (uvicorn[standard] brings it; the API runs on it too), so the clients'
    own overhead stays out of the figure as far as it can."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--operations", type=int, default=10, help="operations the streams are spread over")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second, all operations together")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / ".clusterflow" / "bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp:
        workdir = Path(tmp)
        postgres = None
        dsn = os.environ.get("DATABASE_URL")
        if not dsn:
            postgres = EmbeddedPostgres(workdir / "pg", free_port())
            postgres.start()
            dsn = postgres.dsn
        try:
            report = run_loop(run(args, dsn, workdir))
        finally:
            if postgres is not None:
                postgres.stop()
    (args.out / "stream_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "stream_latency.md").write_text(markdown(report))
    print(markdown(report))
    print(f"reports: {args.out / 'stream_latency.json'}, {args.out / 'stream_latency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
