"""AKS through the real azure-identity and azure-mgmt-containerservice clients against the fake
ARM and Entra ID server (TLS with a trustme CA).

Deploys and how their failures are classified, end to end (API in-process, real worker,
Temporal, PostgreSQL). The whole lifecycle (connect, deploy, update, rollback, cancel,
kubeconfig, delete) is `test_aks_journey.py`; the foreign cluster below is made, and its
delete tried, by running the provider's phases in Temporal's ActivityEnvironment.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from clusterflow.activities.providers.adapter import phase_activities
from clusterflow.activities.providers.azure import OWNER_TAG, AzureProvider
from clusterflow.contracts.phases import DELETE_PHASES
from clusterflow.settings import Settings
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


async def test_the_fake_arm_refuses_what_aks_refuses(arm: FakeArm) -> None:
    """The refusals the journeys rely on, as ARM answers them to the real SDK (status and code)."""
    import asyncio

    from azure.core import MatchConditions
    from azure.core.exceptions import HttpResponseError
    from azure.identity import ClientSecretCredential
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.containerservice import models as aks

    credential = ClientSecretCredential(
        arm.tenant_id,
        CLIENT_ID,
        CLIENT_SECRET,
        authority=arm.url,
        disable_instance_discovery=True,
        connection_verify=str(arm.ca_path),
    )
    client = ContainerServiceClient(
        credential,
        SUBSCRIPTION,
        base_url=arm.url,
        credential_scopes=[f"{arm.url}/.default"],
        connection_verify=str(arm.ca_path),
        polling_interval=0.05,
    )

    def pool(**extra: Any) -> dict[str, Any]:
        return {
            "vm_size": "Standard_D2s_v5",
            "mode": "User",
            "enable_auto_scaling": True,
            "min_count": 1,
            "max_count": 2,
            "count": 1,
            **extra,
        }

    def cluster(version: str, **extra: Any) -> aks.ManagedCluster:
        return aks.ManagedCluster(
            location=REGION,
            properties=aks.ManagedClusterProperties(
                dns_prefix="refusals",
                kubernetes_version=version,
                agent_pool_profiles=[aks.ManagedClusterAgentPoolProfile(name="system", **pool(mode="System"))],
                **extra,
            ),
        )

    def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
        with pytest.raises(HttpResponseError) as caught:
            call(*args, **kwargs).result()
        assert caught.value.error is not None
        return caught.value.status_code or 0, str(caught.value.error.code)

    def run() -> None:
        clusters, pools = client.managed_clusters, client.agent_pools
        clusters.begin_create_or_update(GROUP, "refusals", cluster("1.31")).result()
        put = clusters.begin_create_or_update
        assert refused(put, GROUP, "refusals", cluster("1.30")) == (400, "OperationNotAllowed")  # downgrade
        assert refused(put, GROUP, "refusals", cluster("1.33")) == (400, "OperationNotAllowed")  # skips 1.32
        lonely = cluster("1.31", disable_local_accounts=True)
        assert refused(put, GROUP, "refusals", lonely) == (400, "BadRequest")  # no local accounts without Entra ID
        new = pools.begin_create_or_update
        newer = aks.AgentPool(**pool(orchestrator_version="1.32"))
        assert refused(new, GROUP, "refusals", "newer", newer) == (400, "NodePoolMcVersionIncompatible")
        upside_down = aks.AgentPool(**pool(min_count=3, max_count=2, count=3))
        assert refused(new, GROUP, "refusals", "upside", upside_down) == (400, "InvalidParameter")
        new(GROUP, "refusals", "taken", aks.AgentPool(**pool())).result()
        again = aks.AgentPool(**pool())
        taken = refused(new, GROUP, "refusals", "taken", again, match_condition=MatchConditions.IfMissing)
        assert taken == (412, "PreconditionFailed")
        bigger = aks.AgentPool(**pool(vm_size="Standard_D8s_v5"))
        assert refused(new, GROUP, "refusals", "taken", bigger) == (400, "PropertyChangeNotAllowed")
        assert refused(pools.begin_delete, GROUP, "refusals", "system") == (400, "OperationNotAllowed")
        entra = cluster(
            "1.31",
            aad_profile=aks.ManagedClusterAADProfile(managed=True, enable_azure_rbac=True),
            disable_local_accounts=True,
        )
        put(GROUP, "entra", entra).result()
        with pytest.raises(HttpResponseError) as caught:  # no static credential without local accounts
            clusters.list_cluster_admin_credentials(GROUP, "entra")
        assert (caught.value.status_code, caught.value.error and caught.value.error.code) == (400, "BadRequest")
        assert {p.name for p in pools.list(GROUP, "refusals")} == {"system", "taken"}

    await asyncio.to_thread(run)
