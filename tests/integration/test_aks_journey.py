"""An AKS cluster's whole life through the public API, checked against AKS itself.

Only HTTP against the running API (in-process app, real worker, Temporal, PostgreSQL) drives the
cluster; AKS's state is read the way an auditor would, with azure-mgmt-containerservice acting
as another application registered in the fake ARM / Entra ID (`tests/fakes/arm.py`), never from
our records. One cluster is reused across the steps:

(a) connect the Azure subscription, deploy with two node groups: AKS holds exactly the requested
    version, agent pools, bounds, VM sizes, labels, taints, spot, zones, tags, and Entra ID;
(b) an update: one minor up, a group resized, one added, one removed, tags changed; AKS and the
    record agree with the request;
(b') an update adding a pool name someone else already created on AKS: refused by VALIDATE
    (`INVALID_SPEC`), nothing changed;
(c) an update cancelled while NODE_GROUPS runs (the new pool's create held in the fake), and one
    whose NODE_GROUPS fails (the fake ends an agent-pool operation Failed): pools come back, the
    control plane stays where it got to, and `rollbackStatus` and the operation's `cleanedUp` /
    `leftBehind` say exactly that;
(d) a kubeconfig through the API, an Entra ID token for the AKS API server;
(e) delete: AKS holds nothing of the cluster, and its history stays readable.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from azure.identity import ClientSecretCredential
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice import models as aks

from clusterflow.activities.providers.azure import OWNER_TAG
from clusterflow.settings import Settings
from tests.cloud import cloud_document
from tests.conftest import Org, Services, test_settings
from tests.fakes.arm import FakeArm
from tests.helpers import wait_for_operation
from tests.integration.test_federated_connect import ISSUER, connect_azure, signing_key

__all__ = ["signing_key"]  # a module-scoped fixture, shared
pytestmark = pytest.mark.usefixtures("worker")

NAME = "aks-journey"
GROUP = "rg-journey"
AUDITOR, AUDITOR_SECRET = "auditor-app", "auditor-secret"


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    # Retry-After 0: the SDK's pollers wait the client's polling interval (the settings' seconds).
    fake = FakeArm(tmp_path, operation_seconds=0.2, retry_after="0").start()
    fake.register_app(AUDITOR, AUDITOR_SECRET)
    yield fake
    fake.stop()


@pytest.fixture
def settings(services: Services, arm: FakeArm, signing_key: str) -> Settings:
    return test_settings(
        services,
        enabled_providers=["local", "azure"],
        public_url=ISSUER,
        platform_oidc_signing_key=signing_key,
        azure_arm_endpoint=arm.url,
        azure_authority_host=arm.url,
        azure_ca_bundle=arm.ca_path,
        azure_poll_seconds=0.05,
        cloud_connect_poll_seconds=0.2,
    )


class Auditor:
    """AKS as another application with read access sees it (the SDK, in a thread)."""

    def __init__(self, arm: FakeArm, subscription: str) -> None:
        credential = ClientSecretCredential(
            arm.tenant_id,
            AUDITOR,
            AUDITOR_SECRET,
            authority=arm.url,
            disable_instance_discovery=True,
            connection_verify=str(arm.ca_path),
        )
        self.client = ContainerServiceClient(
            credential,
            subscription,
            base_url=arm.url,
            credential_scopes=[f"{arm.url}/.default"],
            connection_verify=str(arm.ca_path),
            polling_interval=0.05,
        )

    async def cluster(self) -> aks.ManagedCluster | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return await asyncio.to_thread(self.client.managed_clusters.get, GROUP, NAME)
        except ResourceNotFoundError:
            return None

    async def add_pool(self, name: str, pool: aks.AgentPool) -> None:
        await asyncio.to_thread(
            lambda: self.client.agent_pools.begin_create_or_update(GROUP, NAME, name, pool).result()
        )

    async def remove_pool(self, name: str) -> None:
        await asyncio.to_thread(lambda: self.client.agent_pools.begin_delete(GROUP, NAME, name).result())

    async def pools(self) -> dict[str, aks.AgentPool]:
        listed = await asyncio.to_thread(lambda: list(self.client.agent_pools.list(GROUP, NAME)))
        return {str(p.name): p for p in listed}


def group(name: str, machine: str, low: int, high: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "machineTypes": [machine], "minNode": low, "maxNode": high, **extra}


WORKERS = group("workers", "Standard_D4s_v5", 1, 3, labels={"tier": "system"})
BATCH = group(
    "batch",
    "Standard_D8s_v5",
    0,
    5,
    instanceType="spot",
    availabilityZones=["eastus-1", "eastus-2"],
    labels={"workload": "batch"},
    taints=[{"key": "batch", "value": "true", "effect": "NoSchedule"}],
)
MEM = group(
    "mem",
    "Standard_E4s_v5",
    0,
    2,
    labels={"workload": "memory"},
    taints=[{"key": "memory", "effect": "PreferNoSchedule"}],
)


def assert_pool(pool: aks.AgentPool, wanted: dict[str, Any], mode: str, version: str) -> None:
    """The pool as AKS holds it is the node group as requested, field by field."""
    taints = [
        f"{t['key']}={t['value']}:{t['effect']}" if t.get("value") else f"{t['key']}:{t['effect']}"
        for t in wanted.get("taints", [])
    ]
    assert pool.vm_size == wanted["machineTypes"][0]
    assert (pool.min_count, pool.max_count, pool.enable_auto_scaling) == (wanted["minNode"], wanted["maxNode"], True)
    assert pool.count is not None and wanted["minNode"] <= pool.count <= wanted["maxNode"]
    assert (pool.node_labels or {}) == wanted.get("labels", {})
    assert (pool.node_taints or []) == taints
    assert pool.scale_set_priority == ("Spot" if wanted.get("instanceType") == "spot" else None)
    assert (pool.availability_zones or []) == [z.rsplit("-", 1)[-1] for z in wanted.get("availabilityZones", [])]
    assert pool.mode == mode
    assert pool.provisioning_state == "Succeeded"
    assert (pool.current_orchestrator_version or "").startswith(f"{version}.")


def assert_record_groups(view: dict[str, Any], wanted: list[dict[str, Any]]) -> None:
    by_name = {g["name"]: g for g in view["workerNodes"]}
    assert list(by_name) == [g["name"] for g in wanted]
    for requested in wanted:
        recorded = by_name[requested["name"]]
        for key in ("machineTypes", "minNode", "maxNode"):
            assert recorded[key] == requested[key], (requested["name"], key)
        assert recorded.get("labels", {}) == requested.get("labels", {})
        assert recorded["instanceType"] == requested.get("instanceType", "ondemand")


async def patch(api: httpx.AsyncClient, org: Org, cluster_id: str, **spec: Any) -> str:
    body = {"apiVersion": "clusterflow.dev/v1", "kind": "K8sClusterUpdate", "spec": spec}
    response = await api.patch(f"/v1/clusters/{cluster_id}", json=body, headers=org.headers())
    return await approved(api, org, response)


async def approved(api: httpx.AsyncClient, org: Org, response: httpx.Response) -> str:
    """The accepted operation, approved by its owner when the organization's policy asks for it."""
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    if accepted.get("approvalRequired"):
        await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
        decision = await api.post(
            f"/v1/operations/{accepted['operationId']}/approval",
            json={"action": "APPROVE", "token": accepted["approvalToken"]},
            headers=org.headers(),
        )
        assert decision.status_code == 200, decision.text
    return str(accepted["operationId"])


async def view_of(api: httpx.AsyncClient, org: Org, cluster_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/clusters/{cluster_id}", headers=org.headers())
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_an_aks_cluster_from_connect_to_delete_through_the_api(
    api: httpx.AsyncClient, org: Org, arm: FakeArm
) -> None:
    subscription = str(uuid.uuid4())
    auditor = Auditor(arm, subscription)

    # (a) connect, deploy with two node groups --------------------------------------------------
    await connect_azure(api, org, arm, NAME, subscription, GROUP)
    document = cloud_document(
        NAME,
        "azure",
        "eastus",
        {"type": "aks", "aks": {"kubernetesVersion": "1.31", "tags": {"team": "infra"}}},
        [WORKERS, BATCH],
    )
    response = await api.post("/v1/clusters", json=document, headers=org.headers())
    assert response.status_code == 202, response.text
    cluster_id = response.json()["data"]["clusterId"]
    deployed = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"], timeout=90)
    assert deployed["status"] == "SUCCEEDED", deployed

    cluster = await auditor.cluster()
    assert cluster is not None
    assert cluster.kubernetes_version == "1.31"
    assert (cluster.current_kubernetes_version or "").startswith("1.31.")
    assert cluster.tags == {"team": "infra", OWNER_TAG: cluster_id}
    assert cluster.aad_profile is not None
    assert (cluster.aad_profile.managed, cluster.aad_profile.enable_azure_rbac) == (True, True)
    assert cluster.disable_local_accounts is True
    pools = await auditor.pools()
    assert set(pools) == {"workers", "batch"}
    assert_pool(pools["workers"], WORKERS, "System", "1.31")
    assert_pool(pools["batch"], BATCH, "User", "1.31")
    view = await view_of(api, org, cluster_id)
    assert (view["state"], view["kubernetesVersion"]) == ("ACTIVE", "1.31")
    assert_record_groups(view, [WORKERS, BATCH])

    # (b) one minor up, workers resized, mem added, batch removed, tags changed ----------------
    workers_b = {**WORKERS, "minNode": 2, "maxNode": 4}
    tags_b = {"team": "platform", "env": "prod"}
    updated = await wait_for_operation(
        api,
        org.headers(),
        await patch(api, org, cluster_id, kubernetesVersion="1.32", nodeGroups=[workers_b, MEM], tags=tags_b),
        timeout=90,
    )
    assert updated["status"] == "SUCCEEDED", updated
    cluster = await auditor.cluster()
    assert cluster is not None
    assert (cluster.current_kubernetes_version or "").startswith("1.32.")
    assert cluster.tags == {**tags_b, OWNER_TAG: cluster_id}
    pools = await auditor.pools()
    assert set(pools) == {"workers", "mem"}
    assert_pool(pools["workers"], workers_b, "System", "1.32")
    assert_pool(pools["mem"], MEM, "User", "1.32")
    view = await view_of(api, org, cluster_id)
    assert (view["state"], view["kubernetesVersion"]) == ("ACTIVE", "1.32")
    assert_record_groups(view, [workers_b, MEM])
    assert view["upgradeStatus"]["status"] == "COMPLETED"

    # (b') someone else adds a pool: an update adding that name is refused by VALIDATE, untouched
    intruder = group("intruder", "Standard_D2s_v5", 1, 1)
    await auditor.add_pool("intruder", aks.AgentPool(vm_size="Standard_D2s_v5", mode="User", count=1))
    mutations = len(arm.mutations())
    refused = await wait_for_operation(
        api, org.headers(), await patch(api, org, cluster_id, nodeGroups=[workers_b, MEM, intruder]), timeout=60
    )
    assert refused["status"] == "FAILED", refused
    assert refused["error"]["code"] == "INVALID_SPEC"
    assert "intruder already exists" in refused["error"]["message"]
    assert len(arm.mutations()) == mutations, "VALIDATE changed nothing"
    await auditor.remove_pool("intruder")

    # (c1) cancelled while NODE_GROUPS creates a pool: pools back, control plane stays on 1.33 --
    arm.hold_operations(r"/agentPools/extra$")
    extra = group("extra", "Standard_D2s_v5", 0, 1)
    cancelled_id = await patch(
        api, org, cluster_id, kubernetesVersion="1.33", nodeGroups=[{**workers_b, "maxNode": 6}, MEM, extra]
    )
    for _ in range(600):
        if arm.held(r"/agentPools/extra$"):
            break
        await asyncio.sleep(0.05)
    assert arm.held(r"/agentPools/extra$"), await wait_for_operation(api, org.headers(), cancelled_id, timeout=1)
    response = await api.post(f"/v1/operations/{cancelled_id}/cancel", headers=org.headers())
    assert response.status_code in (200, 202), response.text
    await wait_for_operation(api, org.headers(), cancelled_id, until={"CANCELLING", "CANCELLED"})
    arm.release_operations()  # AKS finishes creating the pool; the rollback then removes it
    cancelled = await wait_for_operation(api, org.headers(), cancelled_id, timeout=90)
    assert cancelled["status"] == "CANCELLED", cancelled
    cluster = await auditor.cluster()
    assert cluster is not None
    assert (cluster.current_kubernetes_version or "").startswith("1.33."), "AKS cannot downgrade"
    assert cluster.tags == {**tags_b, OWNER_TAG: cluster_id}
    pools = await auditor.pools()
    assert set(pools) == {"workers", "mem"}
    assert_pool(pools["workers"], workers_b, "System", "1.33")  # bounds restored; nodes stay upgraded
    assert_pool(pools["mem"], MEM, "User", "1.33")
    # What stays as the update left it (the workflow's wording): the control plane on 1.33, and the
    # nodes of the groups it had upgraded.
    left = cancelled["metadata"]["leftBehind"]
    assert len(left) == 2, left
    assert left[0].startswith("control plane stays on 1.33") and "1.32" in left[0], left
    assert "workers, mem" in left[1] and "1.33" in left[1], left
    assert cancelled["metadata"]["cleanedUp"] == ["remove extra", "resize workers to 2..4"]
    view = await view_of(api, org, cluster_id)
    assert (view["state"], view["kubernetesVersion"]) == ("ACTIVE", "1.33")
    assert_record_groups(view, [workers_b, MEM])
    rollback = view["rollbackStatus"]
    assert (rollback["status"], rollback["controlPlaneVersion"]) == ("COMPLETED", "1.33")
    assert rollback["restored"] == ["remove extra", "resize workers to 2..4"]
    assert rollback["notRestored"] == left

    # (c2) NODE_GROUPS fails (AKS ends the new pool's create Failed): pools and tags come back --
    arm.fail_next_pool_operation(
        "AllocationFailed",
        "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.",
        pool="spare",
    )
    spare = group("spare", "Standard_D2s_v5", 0, 2)
    failed = await wait_for_operation(
        api,
        org.headers(),
        await patch(
            api, org, cluster_id, nodeGroups=[{**workers_b, "minNode": 1}, MEM, spare], tags={"team": "platform"}
        ),
        timeout=90,
    )
    assert failed["status"] == "FAILED", failed
    assert "update failed at NODE_GROUPS" in failed["message"], failed["message"]
    assert failed["error"]["code"] == "CLOUD_OPERATION_FAILED"
    assert "AllocationFailed" in failed["error"]["message"]
    cluster = await auditor.cluster()
    assert cluster is not None
    assert (cluster.current_kubernetes_version or "").startswith("1.33.")
    assert cluster.tags == {**tags_b, OWNER_TAG: cluster_id}, "tags restored"
    pools = await auditor.pools()
    assert set(pools) == {"workers", "mem"}, "the Failed pool was removed"
    assert_pool(pools["workers"], workers_b, "System", "1.33")
    assert_pool(pools["mem"], MEM, "User", "1.33")
    assert failed["metadata"]["cleanedUp"] == ["remove spare", "resize workers to 2..4", "tags restored"]
    assert failed["metadata"]["leftBehind"] == []
    view = await view_of(api, org, cluster_id)
    assert (view["state"], view["kubernetesVersion"]) == ("ACTIVE", "1.33")
    assert_record_groups(view, [workers_b, MEM])
    rollback = view["rollbackStatus"]
    assert (rollback["status"], rollback["controlPlaneVersion"]) == ("COMPLETED", "1.33")
    assert rollback["restored"] == ["remove spare", "resize workers to 2..4", "tags restored"]
    assert rollback["notRestored"] == []

    # (d) a kubeconfig: Entra ID, so it expires; no `enable_entra_id` anywhere ------------------
    response = await api.post(
        f"/v1/clusters/{cluster_id}/kubeconfig", json={"clusterName": NAME, "duration": "30m"}, headers=org.headers()
    )
    assert response.status_code == 200, response.text
    issued = response.json()["data"]
    assert issued["expiresAt"]
    config = yaml.safe_load(issued["kubeconfig"])
    assert config["clusters"][0]["cluster"]["server"] == f"https://{cluster.fqdn}:443"
    user = config["users"][0]["user"]
    assert "exec" not in user
    assert user["token"] in arm.aks_tokens, "an Entra ID token for the AKS API server"

    # (e) delete: nothing of the cluster is left on AKS; its history stays readable ------------
    response = await api.delete(f"/v1/clusters/{cluster_id}", headers=org.headers())
    deleted = await wait_for_operation(api, org.headers(), await approved(api, org, response), timeout=90)
    assert deleted["status"] == "SUCCEEDED", deleted
    assert await auditor.cluster() is None
    assert not [k for k in arm.clusters if k[2] == NAME]
    history = await api.get(f"/v1/clusters/{cluster_id}/operations", headers=org.headers())
    assert history.status_code == 200, history.text
    kinds = [(o["operationType"], o["status"]) for o in history.json()["data"]["operations"]]
    assert kinds == [
        ("CLUSTER_DELETE", "SUCCEEDED"),
        ("CLUSTER_UPDATE", "FAILED"),
        ("CLUSTER_UPDATE", "CANCELLED"),
        ("CLUSTER_UPDATE", "FAILED"),
        ("CLUSTER_UPDATE", "SUCCEEDED"),
        ("CLUSTER_DEPLOY", "SUCCEEDED"),
    ]


async def test_a_dedicated_system_pool_follows_the_control_plane(
    api: httpx.AsyncClient, org: Org, arm: FakeArm
) -> None:
    """The document's `controlPlane.nodeGroup` is AKS's System pool; it is no data-plane group,
    yet AKS refuses the next control-plane upgrade while a pool lags, so an upgrade moves it too."""
    subscription = str(uuid.uuid4())
    auditor = Auditor(arm, subscription)
    await connect_azure(api, org, arm, NAME, subscription, GROUP)
    document = cloud_document(NAME, "azure", "eastus", {"type": "aks", "aks": {"kubernetesVersion": "1.31"}}, [BATCH])
    system = group("system", "Standard_D4s_v5", 1, 2)
    document["spec"]["clusterSpec"]["controlPlane"] = {"nodeGroup": system}
    response = await api.post("/v1/clusters", json=document, headers=org.headers())
    assert response.status_code == 202, response.text
    cluster_id = response.json()["data"]["clusterId"]
    deployed = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"], timeout=90)
    assert deployed["status"] == "SUCCEEDED", deployed
    assert_pool((await auditor.pools())["system"], system, "System", "1.31")

    updated = await wait_for_operation(
        api, org.headers(), await patch(api, org, cluster_id, kubernetesVersion="1.32"), timeout=90
    )
    assert updated["status"] == "SUCCEEDED", updated
    pools = await auditor.pools()
    assert_pool(pools["system"], system, "System", "1.32")
    assert_pool(pools["batch"], BATCH, "User", "1.32")
