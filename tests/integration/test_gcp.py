"""GKE through the real google-cloud-container client against the fake GKE REST server.

Deploys go end to end (API in-process, real worker, Temporal, PostgreSQL) and show how GKE's
failures are classified; a few phases run as real activities in Temporal's ActivityEnvironment
(a foreign cluster left alone by delete, Autopilot). Update, rollback, cancel and delete through
the API are proven by `test_gke_journey.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.exceptions import ApplicationError

from clusterflow.activities.providers.adapter import phase_activities
from clusterflow.activities.providers.gcp import OWNER_LABEL, GcpProvider
from clusterflow.contracts.phases import DELETE_PHASES
from clusterflow.settings import Settings
from tests.cloud import cloud_document, operation_row, run_phases
from tests.conftest import Org, Services, test_settings
from tests.fakes.gke import FakeGke
from tests.helpers import all_events, wait_for_operation

PROJECT = "proj-test-1"
REGION = "us-central1"


@pytest.fixture
def gke() -> Iterator[FakeGke]:
    fake = FakeGke(pending_seconds=0.05, running_seconds=0.15).start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(services: Services, gke: FakeGke) -> Settings:
    return test_settings(
        services,
        enabled_providers=["local", "gcp"],
        gcp_endpoint=gke.url,
        gcp_access_token=gke.token,
        gcp_default_project=PROJECT,
        gcp_poll_seconds=0.05,
        activity_max_attempts=3,
    )


def gke_document(name: str, **gke: Any) -> dict[str, Any]:
    return cloud_document(
        name,
        "gcp",
        REGION,
        {"type": "gke", "gke": {"projectId": PROJECT, "kubernetesVersion": "1.32", "labels": {"team": "infra"}, **gke}},
        [
            {"name": "workers", "machineTypes": ["e2-standard-4"], "minNode": 1, "maxNode": 3},
            {"name": "batch", "machineTypes": ["n2-standard-8"], "minNode": 0, "maxNode": 5, "instanceType": "spot"},
        ],
    )


async def deploy(api: httpx.AsyncClient, org: Org, doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    response = await api.post("/v1/clusters", json=doc, headers=org.headers())
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    return accepted, record


@pytest.mark.usefixtures("worker")
async def test_gke_deploy_through_the_api_creates_the_cluster_and_its_node_pools(
    api: httpx.AsyncClient, org: Org, gke: FakeGke
) -> None:
    accepted, record = await deploy(api, org, gke_document("gke-demo", releaseChannel="REGULAR"))
    assert record["status"] == "SUCCEEDED", record

    cluster = gke.cluster(PROJECT, REGION, "gke-demo")
    assert cluster is not None
    assert cluster["status"] == "RUNNING"
    assert cluster["resourceLabels"] == {"team": "infra", OWNER_LABEL: accepted["clusterId"].lower()}
    pools = {p["name"]: p for p in cluster["nodePools"]}
    assert set(pools) == {"workers", "batch"}
    assert pools["batch"]["config"]["machineType"] == "n2-standard-8"
    assert pools["batch"]["config"]["spot"] is True
    assert pools["workers"]["autoscaling"]["enabled"] is True
    assert (
        pools["workers"]["autoscaling"]["totalMinNodeCount"],
        pools["workers"]["autoscaling"]["totalMaxNodeCount"],
    ) == (1, 3)
    assert [m for m in gke.mutations() if m[1].endswith("/clusters")] == [
        ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/clusters")
    ], "one create, pools created with the cluster"

    view = (await api.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "ACTIVE"
    assert view["kubernetesVersion"] == "1.32"
    messages = [e["message"] for e in await all_events(api, org.headers(), accepted["operationId"])]
    assert any("is PENDING" in m for m in messages)
    assert any("is RUNNING" in m for m in messages)
    assert any("is DONE" in m for m in messages)


@pytest.mark.usefixtures("worker")
async def test_gke_quota_shortfall_fails_permanently_with_a_remedy(
    api: httpx.AsyncClient, org: Org, gke: FakeGke
) -> None:
    gke.fail_operation("CREATE_CLUSTER", 8, 'Insufficient regional quota to satisfy request: resource "CPUS"')
    _, record = await deploy(api, org, gke_document("gke-quota"))
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "QUOTA_EXCEEDED"
    assert record["error"]["retryable"] is False
    assert "Remedy" in record["error"]["message"]
    creates = [m for m in gke.mutations() if m[1].endswith("/clusters")]
    assert len(creates) == 1, "a permanent error is not retried"


@pytest.mark.usefixtures("worker")
async def test_gke_permission_denied_fails_in_validate(api: httpx.AsyncClient, org: Org, gke: FakeGke) -> None:
    gke.fail_next(
        "GET",
        "/clusters/gke-denied$",
        403,
        "Permission 'container.clusters.get' denied",
        reason="IAM_PERMISSION_DENIED",
    )
    _, record = await deploy(api, org, gke_document("gke-denied"))
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "PERMISSION_DENIED"
    assert record["currentPhase"] == "VALIDATE"
    assert "roles/container.admin" in record["error"]["message"]
    assert gke.mutations() == []


@pytest.mark.usefixtures("worker")
async def test_gke_server_errors_are_retried_and_the_deploy_succeeds_once(
    api: httpx.AsyncClient, org: Org, gke: FakeGke
) -> None:
    gke.fail_next("POST", "/clusters$", 503, "The service is currently unavailable.", times=2)
    accepted, record = await deploy(api, org, gke_document("gke-flaky"))
    assert record["status"] == "SUCCEEDED", record
    events = await all_events(api, org.headers(), accepted["operationId"])
    assert sum(1 for e in events if "will retry" in e["message"]) == 2
    assert len(gke.clusters) == 1


@pytest.mark.usefixtures("worker")
async def test_gke_create_that_fails_transiently_is_recreated(api: httpx.AsyncClient, org: Org, gke: FakeGke) -> None:
    gke.fail_operation("CREATE_CLUSTER", 14, "The service is currently unavailable.")
    accepted, record = await deploy(api, org, gke_document("gke-again"))
    assert record["status"] == "SUCCEEDED", record
    creates = [m for m in gke.mutations() if m[1].endswith("/clusters")]
    deletes = [m for m in gke.mutations() if m[0] == "DELETE"]
    assert (len(creates), len(deletes)) == (2, 1), "the cluster left in ERROR was replaced once"
    messages = [e["message"] for e in await all_events(api, org.headers(), accepted["operationId"])]
    assert any("is in ERROR; deleting it to retry" in m for m in messages)


@pytest.mark.usefixtures("worker")
async def test_gke_name_taken_by_a_foreign_cluster_is_a_conflict_and_left_alone(
    api: httpx.AsyncClient, org: Org, gke: FakeGke
) -> None:
    gke.clusters[(PROJECT, REGION, "gke-taken")] = {"name": "gke-taken", "status": "RUNNING", "nodePools": []}
    _, record = await deploy(api, org, gke_document("gke-taken"))
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "CLOUD_CONFLICT"
    assert gke.mutations() == []


async def test_gke_delete_leaves_a_foreign_cluster_alone(
    pool: asyncpg.Pool, org: Org, gke: FakeGke, settings: Settings
) -> None:
    gke.clusters[(PROJECT, REGION, "gke-other")] = {"name": "gke-other", "status": "RUNNING", "nodePools": []}
    spec = gke_document("gke-other")["spec"]
    await run_phases(
        phase_activities("gcp", pool, GcpProvider(pool, settings)).delete_phase,
        await operation_row(pool, org.id),
        "cl_x",
        spec,
        DELETE_PHASES,
    )
    assert gke.cluster(PROJECT, REGION, "gke-other") is not None


async def test_gke_autopilot_deploy_has_no_node_pools_and_a_rerun_creates_nothing(
    pool: asyncpg.Pool, org: Org, gke: FakeGke, settings: Settings
) -> None:
    provider = phase_activities("gcp", pool, GcpProvider(pool, settings))
    spec = gke_document("gke-auto", autopilot=True, releaseChannel="REGULAR", kubernetesVersion=None)["spec"]
    del spec["provisioner"]["gke"]["kubernetesVersion"]
    operation = await operation_row(pool, org.id, "CLUSTER_DEPLOY")
    results = await run_phases(provider.deploy_phase, operation, "cl_auto1", spec)
    assert results[-1].kubernetes_version == "1.32", "the REGULAR channel's default"
    cluster = gke.cluster(PROJECT, REGION, "gke-auto")
    assert cluster is not None
    assert cluster["autopilot"] == {"enabled": True}
    assert cluster["nodePools"] == []

    # A worker lost after the create: the retried phases find the cluster (our label) and wait.
    await run_phases(provider.deploy_phase, operation, "cl_auto1", spec, attempt=2)
    assert len([m for m in gke.mutations() if m[1].endswith("/clusters")]) == 1

    too_old = gke_document("gke-auto-old", autopilot=True, kubernetesVersion="1.29")["spec"]
    with pytest.raises(ApplicationError) as caught:
        await run_phases(provider.deploy_phase, operation, "cl_auto2", too_old, ("VALIDATE",))
    assert caught.value.type == "INVALID_SPEC"
    assert "Autopilot" in caught.value.message
