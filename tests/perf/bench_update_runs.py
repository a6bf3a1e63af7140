"""A fleet update run of 1,000 local clusters at full speed, beside the same updates started one
by one (`make bench`).

Set-up as `bench_control_plane.py`: embedded PostgreSQL and Temporal, one real `clusterflow api`
and one `clusterflow worker` process, the `local` provider with no simulated delay. It deploys
N clusters, then:

1. run: one POST /v1/update-runs moving them 1.31 -> 1.32 in 3 stages (10%, 30%, 60% of the
   fleet), groups of at most 100 clusters in parallel, `maxConcurrency` 25 each; the time from
   the POST to the run's SUCCEEDED, and the parent's history per workflow run (it continues as
   new between stages): events and bytes;
2. one by one: the same N clusters 1.32 -> 1.33 through N PATCH /v1/clusters/{id}, in the run's
   order and width (stage after stage, as many in flight as the stage's groups allowed
   together), timed to the last SUCCEEDED: the difference is what the run's orchestration costs.

Reports: `.clusterflow/bench/update_runs.{json,md}`.

    python tests/perf/bench_update_runs.py [--clusters 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf.bench_control_plane import Stack, deploy_document
from tests.perf.bench_stream_latency import machine
from tests.perf.services import embedded_services

from clusterflow.records.db import create_pool
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import create_api_key, create_organization

ROOT = Path(__file__).resolve().parents[2]
GROUP_SIZE = 100
MAX_CONCURRENCY = 25
STAGE_SHARES = (0.1, 0.3, 0.6)


async def _bounded(count: int, concurrency: int, call: Any) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            await call(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _wait_all(pool: Any, ids: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await pool.fetch(
            "SELECT status, count(*) AS n FROM operations WHERE id = ANY($1::text[]) GROUP BY status", ids
        )
        counts = {r["status"]: int(r["n"]) for r in rows}
        if sum(counts.get(s, 0) for s in ("SUCCEEDED", "FAILED", "CANCELLED", "REJECTED")) == len(ids):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"operations still running after {timeout}s: {counts}")
        await asyncio.sleep(0.5)


def _strategy(cluster_ids: list[str]) -> dict[str, Any]:
    stages, start = [], 0
    for index, share in enumerate(STAGE_SHARES):
        end = len(cluster_ids) if index == len(STAGE_SHARES) - 1 else start + max(1, round(len(cluster_ids) * share))
        chunk = cluster_ids[start:end]
        start = end
        groups = [
            {"name": f"g{n}", "clusterIds": chunk[i : i + GROUP_SIZE], "maxConcurrency": MAX_CONCURRENCY}
            for n, i in enumerate(range(0, len(chunk), GROUP_SIZE))
        ]
        stages.append({"name": f"stage-{index + 1}", "groups": groups})
    return {"stages": stages}


async def _history(client: Client, workflow_id: str) -> list[dict[str, int]]:
    """Each run of the workflow (continue-as-new makes one per stage): events and bytes."""
    runs = []
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        history = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        runs.append({"events": len(history.events), "bytes": len(history.to_json().encode())})
    return runs


async def run(args: argparse.Namespace, workdir: Path, dsn: str, temporal: str) -> dict[str, Any]:
    await migrate(dsn)
    pool = await create_pool(dsn, 1, 10)
    org = await create_organization(pool, "bench-runs")
    _, key = await create_api_key(pool, org, "bench", "owner")
    stack = Stack(workdir, dsn, temporal, key, {})
    headers = {"Authorization": f"Bearer {key}"}
    client = await Client.connect(temporal)
    try:
        stack.worker()
        _, base = await stack.api("api")
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as api:
            policy = {"minorVersionUpgrade": False, "clusterUpdate": False}
            (await api.put(f"/v1/organizations/{org}/approval-policy", json=policy)).raise_for_status()
            clusters: list[str] = [""] * args.clusters
            deploys: list[str] = [""] * args.clusters

            async def deploy(index: int) -> None:
                response = await api.post("/v1/clusters", json=deploy_document(f"fleet-{index:04d}"))
                response.raise_for_status()
                data = response.json()["data"]
                clusters[index], deploys[index] = data["clusterId"], data["operationId"]

            began = time.monotonic()
            await _bounded(args.clusters, 50, deploy)
            deployed = await _wait_all(pool, deploys, 1800)
            deploy_seconds = time.monotonic() - began

            body = {
                "name": "bench",
                "change": {"kubernetesVersion": "1.32", "local": {"phaseSeconds": 0}},
                "strategy": _strategy(clusters),
            }
            widest = max(len(s["groups"]) for s in body["strategy"]["stages"]) * MAX_CONCURRENCY
            began = time.monotonic()
            response = await api.post("/v1/update-runs", json=body)
            response.raise_for_status()
            run_id = response.json()["data"]["operationId"]
            run_status = await _wait_all(pool, [run_id], 3600)
            run_seconds = time.monotonic() - began
            view = (await api.get(f"/v1/update-runs/{run_id}")).json()["data"]
            histories = await _history(client, run_id)

            update = {
                "apiVersion": "clusterflow.dev/v1",
                "kind": "K8sClusterUpdate",
                "spec": {"kubernetesVersion": "1.33", "local": {"phaseSeconds": 0}},
            }
            singles: list[str] = [""] * args.clusters

            async def patch(index: int) -> None:
                response = await api.patch(f"/v1/clusters/{clusters[index]}", json=update)
                response.raise_for_status()
                singles[index] = response.json()["data"]["operationId"]

            began = time.monotonic()
            stage_ids = [[c for g in stage["groups"] for c in g["clusterIds"]] for stage in body["strategy"]["stages"]]
            caps = [len(stage["groups"]) * MAX_CONCURRENCY for stage in body["strategy"]["stages"]]
            index_of = {cluster: index for index, cluster in enumerate(clusters)}
            for members, cap in zip(stage_ids, caps, strict=True):
                # The run's order and width: stage after stage, at most as many in flight as the
                # stage's groups allow together.
                in_flight: set[str] = set()

                async def patch_bounded(
                    position: int, members: list[str] = members, cap: int = cap, in_flight: set[str] = in_flight
                ) -> None:
                    while len(in_flight) >= cap:
                        await asyncio.sleep(0.05)
                        done = await pool.fetch(
                            "SELECT id FROM operations WHERE id = ANY($1::text[]) AND completed_at IS NOT NULL",
                            list(in_flight),
                        )
                        in_flight.difference_update(r["id"] for r in done)
                    index = index_of[members[position]]
                    await patch(index)
                    in_flight.add(singles[index])

                await _bounded(len(members), 1, patch_bounded)
                await _wait_all(pool, [singles[index_of[c]] for c in members], 3600)
            singles_seconds = time.monotonic() - began
            singles_status = await _wait_all(pool, singles, 60)
    finally:
        stack.stop_all()
        await pool.close()
    return {
        "machine": machine(),
        "clusters": args.clusters,
        "deploy": {"seconds": round(deploy_seconds, 1), "statuses": deployed},
        "run": {
            "seconds": round(run_seconds, 1),
            "status": run_status,
            "summary": view["summary"],
            "stages": [{"name": s["name"], "groups": len(s["groups"])} for s in view["stages"]],
            "max_concurrency_per_group": MAX_CONCURRENCY,
            "widest_stage_in_flight": widest,
            "history_per_workflow_run": histories,
        },
        "one_by_one": {"seconds": round(singles_seconds, 1), "in_flight_per_stage": caps, "statuses": singles_status},
    }


def markdown(r: dict[str, Any]) -> str:
    run, singles = r["run"], r["one_by_one"]
    histories = run["history_per_workflow_run"]
    largest = max(histories, key=lambda h: h["events"]) if histories else {"events": 0, "bytes": 0}
    return "\n".join(
        [
            f"Fleet update run, {r['clusters']} local clusters at full speed "
            f"({r['machine']['cpus']} x {r['machine']['cpu']}, load {r['machine']['loadavg_at_start'][0]} at start):",
            "",
            f"- the run (3 stages, groups of {GROUP_SIZE}, maxConcurrency {run['max_concurrency_per_group']}): "
            f"{run['seconds']} s, {run['summary']['succeeded']} updated, {run['summary']['failed']} failed",
            f"- the same updates one by one (PATCH, stage after stage, {singles['in_flight_per_stage']} in flight): "
            f"{singles['seconds']} s",
            f"- the parent's history: {len(histories)} workflow runs (continue-as-new between stages), the "
            f"largest {largest['events']} events / {round(largest['bytes'] / 1024)} KiB",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=int(os.environ.get("BENCH_RUN_CLUSTERS", "1000")))
    parser.add_argument("--out", type=Path, default=ROOT / ".clusterflow" / "bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with embedded_services("cf-bench-runs-") as services:
        report = asyncio.run(run(args, services.workdir, services.dsn, services.temporal))
    (args.out / "update_runs.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "update_runs.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
