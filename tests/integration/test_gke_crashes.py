"""A worker killed while GKE creates the cluster: the retry finds it, none is created twice.

The worker is the real `clusterflow worker` process, pointed at the fake GKE through settings
(`CLUSTERFLOW_GCP_ENDPOINT`); it is killed with SIGKILL while it polls the cluster's create
operation. The fake holds that operation RUNNING (the cluster PROVISIONING) until the
replacement worker's retry of CONTROL_PLANE has started, so the kill lands mid-create and the
retry meets a cluster that is still being built: it must recognise it by its owner label and
wait for it, not create a second one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from clusterflow.api.app import create_app
from clusterflow.settings import Settings
from tests.cloud import cloud_document
from tests.conftest import Org, Services, test_settings
from tests.fakes.gke import FakeGke
from tests.helpers import all_events, wait_for_operation
from tests.processes import kill_hard, settings_env, spawn, stop

PROJECT = "proj-crash-1"
REGION = "us-central1"
NAME = "crashy-gke"


@pytest.fixture
def gke() -> Iterator[FakeGke]:
    fake = FakeGke(pending_seconds=0.05, running_seconds=0.1).start()
    yield fake
    fake.stop()


async def wait_until(check: Callable[[], bool], what: str, log: Path, tries: int = 600) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text()[-3000:]}")


async def test_worker_killed_mid_deploy_creates_exactly_one_gke_cluster(
    services: Services, gke: FakeGke, org: Org, tmp_path: Path
) -> None:
    settings: Settings = test_settings(
        services,
        enabled_providers=["local", "gcp"],
        gcp_endpoint=gke.url,
        gcp_access_token=gke.token,
        gcp_default_project=PROJECT,
        gcp_poll_seconds=0.05,
        activity_heartbeat_timeout_seconds=2.0,
    )
    env = settings_env(
        settings,
        CLUSTERFLOW_ENABLED_PROVIDERS=json.dumps(["local", "gcp"]),
        CLUSTERFLOW_GCP_ENDPOINT=gke.url,
        CLUSTERFLOW_GCP_ACCESS_TOKEN=gke.token,
        CLUSTERFLOW_GCP_DEFAULT_PROJECT=PROJECT,
        CLUSTERFLOW_GCP_POLL_SECONDS="0.05",
    )
    gke.hold("CREATE_CLUSTER")
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"
    first = spawn("worker", env, first_log)
    second = None
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                doc = cloud_document(
                    NAME,
                    "gcp",
                    REGION,
                    {"type": "gke", "gke": {"kubernetesVersion": "1.32"}},
                    [
                        {"name": "workers", "machineTypes": ["e2-standard-4"], "minNode": 1, "maxNode": 3},
                        {"name": "batch", "machineTypes": ["n2-standard-8"], "minNode": 0, "maxNode": 2},
                    ],
                )
                response = await api.post("/v1/clusters", json=doc, headers=org.headers())
                assert response.status_code == 202, response.text
                operation_id = response.json()["data"]["operationId"]
                await wait_until(lambda: bool(gke.held()), "the cluster's create operation", first_log)
                live = gke.cluster(PROJECT, REGION, NAME)
                assert live is not None and live["status"] == "PROVISIONING"
                await asyncio.sleep(0.3)  # the worker is polling the create operation
                kill_hard(first)

                second = spawn("worker", env, second_log)

                async def retried() -> bool:
                    events = await all_events(api, org.headers(), operation_id)
                    rechecked = "re-checking CONTROL_PLANE after a worker restart"
                    return any(e["message"].startswith(rechecked) for e in events)

                for _ in range(600):
                    if await retried():
                        break
                    await asyncio.sleep(0.05)
                assert await retried(), second_log.read_text()[-3000:]
                assert gke.cluster(PROJECT, REGION, NAME)["status"] == "PROVISIONING"  # type: ignore[index]
                gke.release()  # GKE finishes creating the cluster
                record = await wait_for_operation(api, org.headers(), operation_id, timeout=90)
                events = await all_events(api, org.headers(), operation_id)
    finally:
        stop(first)
        if second is not None:
            stop(second)

    assert record["status"] == "SUCCEEDED", record
    creates = [m for m in gke.mutations() if m == ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/clusters")]
    assert len(creates) == 1, "the retry found the cluster instead of creating another"
    assert list(gke.clusters) == [(PROJECT, REGION, NAME)]
    live = gke.cluster(PROJECT, REGION, NAME)
    assert live is not None and live["status"] == "RUNNING"
    assert {p["name"] for p in live["nodePools"]} == {"workers", "batch"}
    messages = [e["message"] for e in events]
    assert any(m.startswith(f"found existing GKE cluster {NAME} (") for m in messages), messages
    assert not any(m.startswith(f"created GKE cluster {NAME}") for m in messages)
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
