"""Scale-out as production runs it: two `clusterflow api` and two `clusterflow worker` processes
against one Temporal and one PostgreSQL. Operations started through either API complete, both
APIs show the same records, an idempotency key holds across them, the workers together finish
each operation exactly once, and the APIs log JSON lines carrying the request, organization and
operation they concern.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterflow.devstack.postgres import free_port
from clusterflow.vault import dev_vault_keys
from tests.conftest import Org, Services, test_settings
from tests.helpers import deploy_document, wait_for_operation
from tests.processes import settings_env, spawn, stop, wait_http

DEPLOYS = 6


@pytest.fixture
def stack(services: Services, tmp_path: Path) -> Iterator[tuple[list[str], list[str], Path]]:
    settings = test_settings(services)
    shared = {"CLUSTERFLOW_LOG_FORMAT": "json", "CLUSTERFLOW_VAULT_KEYS": dev_vault_keys(tmp_path)}
    processes: list[subprocess.Popen[bytes]] = []
    apis, workers = [], []
    sdk_metrics_port = free_port()
    try:
        for i in range(2):
            metrics_port = free_port()
            extra = {"CLUSTERFLOW_TEMPORAL_SDK_METRICS_PORT": str(sdk_metrics_port)} if i == 0 else {}
            env = settings_env(settings, CLUSTERFLOW_METRICS_PORT=str(metrics_port), **shared, **extra)
            processes.append(spawn("worker", env, tmp_path / f"worker-{i}.log"))
            workers.append(f"http://127.0.0.1:{metrics_port}")
        for i in range(2):
            port = free_port()
            env = settings_env(settings, CLUSTERFLOW_API_PORT=str(port), **shared)
            processes.append(spawn("api", env, tmp_path / f"api-{i}.log"))
            apis.append(f"http://127.0.0.1:{port}")
        for url, process in zip(workers + apis, processes, strict=True):
            wait_http(f"{url}/metrics" if url in workers else f"{url}/healthz", process)
        workers.append(f"http://127.0.0.1:{sdk_metrics_port}")
        yield apis, workers, tmp_path
    finally:
        for process in processes:
            stop(process)


def samples(text: str, name: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels.get("status") == "SUCCEEDED"
    )


async def test_two_apis_and_two_workers_behave_as_one(stack: tuple[list[str], list[str], Path], org: Org) -> None:
    apis, workers, logs = stack
    clients = [httpx.AsyncClient(base_url=url, timeout=10) for url in apis]
    try:
        accepted = []
        for i in range(DEPLOYS):
            response = await clients[i % 2].post(
                "/v1/clusters", json=deploy_document(f"scale-{i}"), headers=org.headers()
            )
            assert response.status_code == 202, response.text
            accepted.append(response.json()["data"])
        # Each operation is followed through the API that did not start it.
        records = await asyncio.gather(
            *(
                wait_for_operation(clients[(i + 1) % 2], org.headers(), a["operationId"], 90)
                for i, a in enumerate(accepted)
            )
        )
        assert [r["status"] for r in records] == ["SUCCEEDED"] * DEPLOYS
        for a in accepted:
            seen = [
                (await c.get(f"/v1/operations/{a['operationId']}", headers=org.headers())).json()["data"]
                for c in clients
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
    finally:
        for client in clients:
            await client.aclose()

    for i in range(2):
        lines = [json.loads(line) for line in (logs / f"api-{i}.log").read_text().splitlines() if line.startswith("{")]
        posts = [
            line for line in lines if line["logger"] == "clusterflow.access" and "POST /v1/clusters" in line["message"]
        ]
        assert posts and all(p["request_id"].startswith("req_") and p["organization_id"] == org.id for p in posts)
        assert all(p["operation_id"].startswith("op_") for p in posts)
