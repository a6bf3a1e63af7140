"""A worker killed while AKS creates the managed cluster: the retry finds it, none is created twice.

The worker is the real `clusterflow worker` process, configured through the environment to reach
the fake ARM / Entra ID over TLS; it is killed with SIGKILL while it polls the cluster's create.
The fake holds that create `InProgress` (`FakeArm.hold_operations`) until the replacement
worker has taken the phase over, then lets it finish; the deploy must succeed with one PUT.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from clusterflow.api.app import create_app
from clusterflow.settings import Settings
from tests.conftest import Org, Services, test_settings
from tests.fakes.arm import FakeArm
from tests.helpers import all_events, wait_for_operation
from tests.integration.test_azure import CLIENT_ID, CLIENT_SECRET, GROUP, SUBSCRIPTION, aks_document
from tests.processes import kill_hard, settings_env, spawn, stop

NAME = "crashy-aks"
CREATE = rf"/managedClusters/{NAME}$"


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    fake = FakeArm(tmp_path, operation_seconds=0.2, retry_after="0").start()
    fake.register_app(CLIENT_ID, CLIENT_SECRET)
    yield fake
    fake.stop()


def azure_env(settings: Settings, arm: FakeArm) -> dict[str, str]:
    return settings_env(
        settings,
        CLUSTERFLOW_ENABLED_PROVIDERS=json.dumps(["local", "azure"]),
        CLUSTERFLOW_AZURE_ARM_ENDPOINT=arm.url,
        CLUSTERFLOW_AZURE_AUTHORITY_HOST=arm.url,
        CLUSTERFLOW_AZURE_TENANT_ID=arm.tenant_id,
        CLUSTERFLOW_AZURE_CLIENT_ID=CLIENT_ID,
        CLUSTERFLOW_AZURE_CLIENT_SECRET=CLIENT_SECRET,
        CLUSTERFLOW_AZURE_CA_BUNDLE=str(arm.ca_path),
        CLUSTERFLOW_AZURE_POLL_SECONDS="0.05",
    )


async def test_worker_killed_mid_deploy_creates_exactly_one_aks_cluster(
    services: Services, arm: FakeArm, org: Org, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = test_settings(
        services,
        enabled_providers=["local", "azure"],
        activity_heartbeat_timeout_seconds=2.0,
        azure_arm_endpoint=arm.url,
        azure_authority_host=arm.url,
        azure_ca_bundle=arm.ca_path,
    )
    env = azure_env(settings, arm)
    arm.hold_operations(CREATE)  # AKS is still creating the cluster when the worker dies
    first = spawn("worker", env, tmp_path / "worker-1.log")
    second = None
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                response = await api.post("/v1/clusters", json=aks_document(NAME), headers=org.headers())
                assert response.status_code == 202, response.text
                operation_id = response.json()["data"]["operationId"]
                for _ in range(600):
                    if arm.held(CREATE):
                        break
                    await asyncio.sleep(0.05)
                assert arm.held(CREATE), (tmp_path / "worker-1.log").read_text()[-3000:]
                await asyncio.sleep(0.3)  # the worker is polling the Creating cluster
                kill_hard(first)

                second = spawn("worker", env, tmp_path / "worker-2.log")
                for _ in range(600):
                    events = await all_events(api, org.headers(), operation_id)
                    if any(e["message"].startswith("re-checking CONTROL_PLANE after a worker restart") for e in events):
                        break
                    await asyncio.sleep(0.05)
                arm.release_operations()  # AKS finishes creating it
                record = await wait_for_operation(api, org.headers(), operation_id, timeout=90)
                events = await all_events(api, org.headers(), operation_id)
    finally:
        stop(first)
        if second is not None:
            stop(second)

    assert record["status"] == "SUCCEEDED", (record, (tmp_path / "worker-2.log").read_text()[-3000:])
    puts = [p for m, p in arm.mutations() if m == "PUT" and p.endswith(f"/managedClusters/{NAME}")]
    assert len(puts) == 1, "the managed cluster was created once"
    assert [k for k in arm.clusters if k[2] == NAME] == [(SUBSCRIPTION, GROUP, NAME)]
    live = arm.cluster(SUBSCRIPTION, GROUP, NAME)
    assert live is not None
    assert live["properties"]["provisioningState"] == "Succeeded"
    assert {p["name"] for p in live["properties"]["agentPoolProfiles"]} == {"workers", "batch"}
    messages = [e["message"] for e in events]
    assert any(m.startswith("re-checking CONTROL_PLANE after a worker restart") for m in messages), messages
    assert any(m.startswith(f"found existing AKS cluster {NAME}") for m in messages), messages
    assert not any(m.startswith(f"created AKS cluster {NAME}") for m in messages), messages
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
