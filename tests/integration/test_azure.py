"""AKS through the real azure-identity and azure-mgmt-containerservice clients against the fake
ARM and Entra ID server (TLS with a trustme CA).

Deploys go end to end (API in-process, real worker, Temporal, PostgreSQL); update and delete
phases run as real activities in Temporal's ActivityEnvironment.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.exceptions import ApplicationError

from clusterflow.activities.providers.adapter import phase_activities
from clusterflow.activities.providers.azure import OWNER_TAG, AzureProvider
from clusterflow.settings import Settings
from clusterflow.workflows.contracts import DELETE_PHASES, UPDATE_PHASES
from tests.cloud import cloud_document, operation_row, run_phases
from tests.conftest import Org, Services, test_settings
from tests.fakes.arm import FakeArm
from tests.helpers import all_events, wait_for_operation

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
GROUP = "rg-clusters"
REGION = "eastus"
CLIENT_ID, CLIENT_SECRET = "app-clusterflow", "s3cret-value"


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    fake = FakeArm(tmp_path, operation_seconds=0.3).start()
    fake.register_app(CLIENT_ID, CLIENT_SECRET)
    yield fake
    fake.stop()


@pytest.fixture
def settings(services: Services, arm: FakeArm) -> Settings:
    return test_settings(
        services,
        enabled_providers=["local", "azure"],
        azure_arm_endpoint=arm.url,
        azure_authority_host=arm.url,
        azure_tenant_id=arm.tenant_id,
        azure_client_id=CLIENT_ID,
        azure_client_secret=CLIENT_SECRET,
        azure_ca_bundle=arm.ca_path,
        azure_poll_seconds=0.1,
        activity_max_attempts=3,
    )


def aks_document(name: str, **aks: Any) -> dict[str, Any]:
    return cloud_document(
        name,
        "azure",
        REGION,
        {
            "type": "aks",
            "aks": {
                "subscriptionId": SUBSCRIPTION,
                "resourceGroup": GROUP,
                "kubernetesVersion": "1.32",
                "tags": {"team": "infra"},
                **aks,
            },
        },
        [
            {"name": "workers", "machineTypes": ["Standard_D4s_v5"], "minNode": 1, "maxNode": 3},
            {
                "name": "batch",
                "machineTypes": ["Standard_D8s_v5"],
                "minNode": 0,
                "maxNode": 5,
                "instanceType": "spot",
                "availabilityZones": ["eastus-1", "eastus-2"],
            },
        ],
    )


async def deploy(api: httpx.AsyncClient, org: Org, doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    response = await api.post("/v1/clusters", json=doc, headers=org.headers())
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    return accepted, await wait_for_operation(api, org.headers(), accepted["operationId"])


@pytest.mark.usefixtures("worker")
async def test_aks_deploy_through_the_api_creates_the_cluster_and_its_agent_pools(
    api: httpx.AsyncClient, org: Org, arm: FakeArm
) -> None:
    accepted, record = await deploy(api, org, aks_document("aks-demo", enableWorkloadIdentity=True))
    assert record["status"] == "SUCCEEDED", record

    cluster = arm.cluster(SUBSCRIPTION, GROUP, "aks-demo")
    assert cluster is not None
    assert cluster["properties"]["provisioningState"] == "Succeeded"
    assert cluster["tags"] == {"team": "infra", OWNER_TAG: accepted["clusterId"]}
    assert cluster["properties"]["oidcIssuerProfile"] == {"enabled": True}
    pools = {p["name"]: p for p in cluster["properties"]["agentPoolProfiles"]}
    assert pools["workers"]["mode"] == "System"
    assert pools["batch"]["mode"] == "User"
    assert pools["batch"]["scaleSetPriority"] == "Spot"
    assert pools["batch"]["availabilityZones"] == ["1", "2"]
    assert pools["batch"]["vmSize"] == "Standard_D8s_v5"
    puts = [m for m in arm.mutations() if m[0] == "PUT"]
    assert len(puts) == 1, "one PUT of the managed cluster with every pool"

    view = (await api.get(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "ACTIVE"
    assert view["kubernetesVersion"] == "1.32"


@pytest.mark.usefixtures("worker")
async def test_aks_quota_failure_of_the_async_operation_is_permanent(
    api: httpx.AsyncClient, org: Org, arm: FakeArm
) -> None:
    arm.fail_operation(
        "managedClusters/aks-quota",
        "QuotaExceeded",
        "Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota.",
    )
    _, record = await deploy(api, org, aks_document("aks-quota"))
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "QUOTA_EXCEEDED"
    assert record["error"]["retryable"] is False
    assert "Remedy" in record["error"]["message"]
    assert len([m for m in arm.mutations() if m[0] == "PUT"]) == 1


@pytest.mark.usefixtures("worker")
async def test_aks_authorization_failure_is_permanent(api: httpx.AsyncClient, org: Org, arm: FakeArm) -> None:
    arm.fail_next(
        "PUT",
        "managedClusters/aks-denied$",
        403,
        "AuthorizationFailed",
        "The client does not have authorization to perform action 'Microsoft.ContainerService/managedClusters/write'",
    )
    _, record = await deploy(api, org, aks_document("aks-denied"))
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "PERMISSION_DENIED"
    assert record["currentPhase"] == "CONTROL_PLANE"


@pytest.mark.usefixtures("worker")
async def test_aks_throttling_and_server_errors_are_retried(api: httpx.AsyncClient, org: Org, arm: FakeArm) -> None:
    arm.fail_next("PUT", "managedClusters/aks-flaky$", 429, "TooManyRequests", "slow down", retry_after="1")
    arm.fail_next("PUT", "managedClusters/aks-flaky$", 500, "InternalServerError", "try again")
    accepted, record = await deploy(api, org, aks_document("aks-flaky"))
    assert record["status"] == "SUCCEEDED", record
    events = await all_events(api, org.headers(), accepted["operationId"])
    assert sum(1 for e in events if "will retry" in e["message"]) == 2
    assert arm.cluster(SUBSCRIPTION, GROUP, "aks-flaky") is not None


@pytest.mark.usefixtures("worker")
async def test_aks_bad_credentials_fail_with_an_auth_error(
    services: Services, org: Org, arm: FakeArm, api: httpx.AsyncClient
) -> None:
    arm.secrets[CLIENT_ID] = "rotated"
    _, record = await deploy(api, org, aks_document("aks-auth"))
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "CLOUD_AUTH_FAILED"


async def test_aks_busy_cluster_is_waited_for_then_updated(
    pool: asyncpg.Pool, org: Org, arm: FakeArm, settings: Settings
) -> None:
    provider = phase_activities("azure", pool, AzureProvider(pool, settings))
    spec = aks_document("aks-up")["spec"]
    await run_phases(provider.deploy_phase, await operation_row(pool, org.id, "CLUSTER_DEPLOY"), "cl_aks1", spec)

    # Another operation holds the cluster for a moment: the first PUT is refused with 409.
    arm.fail_next("PUT", "managedClusters/aks-up$", 409, "OperationNotAllowed", "another operation is in progress")
    change = {
        "kubernetesVersion": "1.33",
        "autoUpgradeChannel": "stable",
        "tags": {"team": "platform"},
        "nodeGroups": [
            {"name": "workers", "changeType": "UPGRADE"},
            {"name": "batch", "changeType": "RESIZE", "minNode": 1, "maxNode": 9},
            {"name": "gpu", "changeType": "ADD", "machineTypes": ["Standard_NC4as_T4_v3"], "minNode": 0, "maxNode": 2},
        ],
    }
    update_op = await operation_row(pool, org.id)
    results = await run_phases(provider.update_phase, update_op, "cl_aks1", spec, UPDATE_PHASES, change)
    assert results[-1].outputs["cluster"]["kubernetesVersion"] == "1.33"

    cluster = arm.cluster(SUBSCRIPTION, GROUP, "aks-up")
    assert cluster is not None
    assert cluster["properties"]["currentKubernetesVersion"].startswith("1.33.")
    assert cluster["properties"]["autoUpgradeProfile"]["upgradeChannel"] == "stable"
    assert cluster["tags"] == {"team": "platform", OWNER_TAG: "cl_aks1"}
    pools = {p["name"]: p for p in cluster["properties"]["agentPoolProfiles"]}
    assert pools["workers"]["currentOrchestratorVersion"].startswith("1.33.")
    assert (pools["batch"]["minCount"], pools["batch"]["maxCount"]) == (1, 9)
    assert pools["gpu"]["mode"] == "User"

    # The same update again changes nothing: ARM PUTs are only sent for real differences.
    before = len(arm.mutations())
    await run_phases(provider.update_phase, update_op, "cl_aks1", spec, UPDATE_PHASES, change, attempt=2)
    assert len(arm.mutations()) == before

    # A skipped minor is refused before anything changes.
    with pytest.raises(ApplicationError) as caught:
        await run_phases(
            provider.update_phase,
            await operation_row(pool, org.id),
            "cl_aks1",
            spec,
            ("VALIDATE",),
            {"kubernetesVersion": "1.30"},
        )
    assert caught.value.type == "INVALID_SPEC"

    # Delete: the cluster goes, and a second run finds nothing to do.
    delete_op = await operation_row(pool, org.id, "CLUSTER_DELETE")
    await run_phases(provider.delete_phase, delete_op, "cl_aks1", spec, DELETE_PHASES)
    assert arm.cluster(SUBSCRIPTION, GROUP, "aks-up") is None
    deletes = [m for m in arm.mutations() if m[0] == "DELETE"]
    await run_phases(provider.delete_phase, delete_op, "cl_aks1", spec, DELETE_PHASES, attempt=2)
    assert [m for m in arm.mutations() if m[0] == "DELETE"] == deletes


@pytest.mark.usefixtures("worker")
async def test_aks_name_taken_by_a_foreign_cluster_is_a_conflict_and_left_alone(
    api: httpx.AsyncClient, org: Org, arm: FakeArm, pool: asyncpg.Pool, settings: Settings
) -> None:
    provider = phase_activities("azure", pool, AzureProvider(pool, settings))
    spec = aks_document("aks-taken")["spec"]
    await run_phases(provider.deploy_phase, await operation_row(pool, org.id, "CLUSTER_DEPLOY"), "cl_someone", spec)
    puts = len(arm.mutations())

    _, record = await deploy(api, org, aks_document("aks-taken"))
    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "CLOUD_CONFLICT"
    assert record["currentPhase"] == "VALIDATE"
    await run_phases(provider.delete_phase, await operation_row(pool, org.id), "cl_mine", spec, DELETE_PHASES)
    assert len(arm.mutations()) == puts, "neither deploy nor delete touched someone else's cluster"
    assert arm.cluster(SUBSCRIPTION, GROUP, "aks-taken") is not None
