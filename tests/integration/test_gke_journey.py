"""A GKE cluster's life through the public API only, checked against GKE's own state.

The API runs in-process with a real worker, Temporal and PostgreSQL; GKE is the wire fake
(`tests/fakes/gke.py`), reached by the provider as the connected account's service account
(Workload Identity Federation). The test talks to clusterflow over HTTP only, and reads GKE the
way an auditor would: through `google-cloud-container`'s own client on GKE's REST API, never
through our records. One cluster lives through every step:

1. connect the GCP account, deploy with two node groups: GKE holds exactly the version, pools,
   autoscaling bounds, machine types, labels, taints, spot, zones and resource labels asked for;
2. update: one minor up, a group resized, one added, one removed, tags and GKE settings changed;
   GKE and `GET /v1/clusters/{id}` agree with the request field by field;
3. an update cancelled while a NODE_GROUPS operation runs, then one that fails there (a quota
   error injected into a node-pool create): the pools come back as they were, the master stays
   on the version it reached, and `rollbackStatus`, `cleanedUp` and `leftBehind` say exactly that;
4. delete: GKE holds nothing of the cluster; its operation history stays readable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.cloud import container_v1
from google.oauth2.credentials import Credentials

from clusterflow.settings import Settings
from tests.cloud import cloud_document
from tests.conftest import Org, Services, test_settings
from tests.fakes.gke import FakeGke
from tests.helpers import all_events, wait_for_operation
from tests.integration.test_federated_connect import ISSUER, connect_gcp, signing_key

__all__ = ["signing_key"]  # a module-scoped fixture, shared

pytestmark = pytest.mark.usefixtures("worker")

PROJECT = "acme-journey-1"
REGION = "us-central1"
NAME = "gke-journey"
OWNER_LABEL = "clusterflow-cluster-id"
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}

WORKERS = {
    "name": "workers",
    "machineTypes": ["e2-standard-4"],
    "minNode": 1,
    "maxNode": 3,
    "labels": {"role": "general"},
    "availabilityZones": ["us-central1-a", "us-central1-b"],
}
BATCH = {
    "name": "batch",
    "machineTypes": ["n2-standard-8"],
    "minNode": 0,
    "maxNode": 5,
    "instanceType": "spot",
    "labels": {"role": "batch"},
    "taints": [{"key": "spot", "value": "true", "effect": "NoSchedule"}],
    "availabilityZones": ["us-central1-c"],
}
GPU = {
    "name": "gpu",
    "machineTypes": ["g2-standard-8"],
    "minNode": 0,
    "maxNode": 2,
    "labels": {"role": "gpu"},
    "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoExecute"}],
    "availabilityZones": ["us-central1-a"],
}
EXTRA = {"name": "extra", "machineTypes": ["e2-standard-2"], "minNode": 1, "maxNode": 2}


@pytest.fixture
def gke() -> Iterator[FakeGke]:
    fake = FakeGke(pending_seconds=0.05, running_seconds=0.1).start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(services: Services, gke: FakeGke, signing_key: str) -> Settings:
    return test_settings(
        services,
        enabled_providers=["local", "gcp"],
        public_url=ISSUER,
        platform_oidc_signing_key=signing_key,
        gcp_endpoint=gke.url,
        gcp_poll_seconds=0.05,
        gcp_sts_endpoint=f"{gke.url}/v1/token",
        gcp_iam_credentials_endpoint=gke.url,
        cloud_connect_poll_seconds=0.2,
    )


class Auditor:
    """GKE as its own API states it, read with google-cloud-container (not with our records)."""

    def __init__(self, gke: FakeGke) -> None:
        self.client = container_v1.ClusterManagerClient(
            transport="rest",
            credentials=Credentials(token=gke.token),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=gke.url),
        )
        self.parent = f"projects/{PROJECT}/locations/{REGION}"
        self.name = f"{self.parent}/clusters/{NAME}"

    async def cluster(self) -> container_v1.Cluster:
        return await asyncio.to_thread(self.client.get_cluster, name=self.name)

    async def pools(self) -> dict[str, dict[str, Any]]:
        """Each node pool in the node-group document's shape, with its version."""
        listed = await asyncio.to_thread(self.client.list_node_pools, parent=self.name)
        return {pool.name: as_group(pool) for pool in listed.node_pools}

    async def clusters(self) -> list[str]:
        listed = await asyncio.to_thread(self.client.list_clusters, parent=self.parent)
        return [c.name for c in listed.clusters]


def as_group(pool: container_v1.NodePool) -> dict[str, Any]:
    assert pool.autoscaling.enabled, pool.name
    assert container_v1.NodePool.Status(pool.status).name == "RUNNING", pool
    return {
        "name": pool.name,
        "machineTypes": [pool.config.machine_type],
        "minNode": pool.autoscaling.total_min_node_count,
        "maxNode": pool.autoscaling.total_max_node_count,
        "labels": dict(pool.config.labels),
        "taints": [
            {"key": t.key, "value": t.value, "effect": _EFFECTS[container_v1.NodeTaint.Effect(t.effect).name]}
            for t in pool.config.taints
        ],
        "availabilityZones": list(pool.locations),
        "instanceType": "spot" if pool.config.spot else "ondemand",
        "version": minor(pool.version),
    }


def normalized(group: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """A requested (or recorded) node group with the document's defaults filled in."""
    shaped = {
        "name": group["name"],
        "machineTypes": list(group["machineTypes"]),
        "minNode": group["minNode"],
        "maxNode": group["maxNode"],
        "labels": dict(group.get("labels") or {}),
        "taints": [
            {"key": t["key"], "value": t.get("value", ""), "effect": t["effect"]} for t in group.get("taints") or []
        ],
        "availabilityZones": list(group.get("availabilityZones") or []),
        "instanceType": group.get("instanceType") or "ondemand",
    }
    return shaped | ({"version": version} if version else {})


def by_name(groups: list[dict[str, Any]], version: str | None = None) -> dict[str, dict[str, Any]]:
    return {g["name"]: normalized(g, version) for g in groups}


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def update_document(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "clusterflow.dev/v1", "kind": "K8sClusterUpdate", "spec": spec}


async def view(api: httpx.AsyncClient, org: Org, cluster_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/clusters/{cluster_id}", headers=org.headers())
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def patch(api: httpx.AsyncClient, org: Org, cluster_id: str, **spec: Any) -> str:
    response = await api.patch(f"/v1/clusters/{cluster_id}", json=update_document(**spec), headers=org.headers())
    assert response.status_code == 202, response.text
    operation_id: str = response.json()["data"]["operationId"]
    return operation_id


async def eventually(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_gke_journey_from_connect_to_delete(api: httpx.AsyncClient, org: Org, gke: FakeGke) -> None:
    policy = await api.put(
        f"/v1/organizations/{org.id}/approval-policy",
        json={"clusterDelete": False, "minorVersionUpgrade": False},
        headers=org.headers(),
    )
    assert policy.status_code == 200, policy.text
    auditor = Auditor(gke)
    account = await connect_gcp(api, org, gke, NAME, PROJECT)

    # 1. Deploy with two node groups.
    doc = cloud_document(
        NAME,
        "gcp",
        REGION,
        {"type": "gke", "gke": {"kubernetesVersion": "1.31", "labels": {"team": "infra", "cost-center": "c42"}}},
        [WORKERS, BATCH],
    )
    response = await api.post("/v1/clusters", json=doc, headers=org.headers())
    assert response.status_code == 202, response.text
    cluster_id = response.json()["data"]["clusterId"]
    deployed = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"])
    assert deployed["status"] == "SUCCEEDED", deployed
    owner = {OWNER_LABEL: cluster_id.lower()}

    cluster = await auditor.cluster()
    assert minor(cluster.current_master_version) == "1.31"
    assert dict(cluster.resource_labels) == {"team": "infra", "cost-center": "c42", **owner}
    assert await auditor.pools() == by_name([WORKERS, BATCH], "1.31")
    record = await view(api, org, cluster_id)
    assert record["state"] == "ACTIVE" and record["kubernetesVersion"] == "1.31"
    assert by_name(record["workerNodes"]) == by_name([WORKERS, BATCH])
    assert record["tags"] == {k: v for k, v in cluster.resource_labels.items() if k != OWNER_LABEL}
    calls = set(gke.callers) - {"static"}  # the auditor reads with a token of its own
    assert calls == {account["serviceAccountEmail"]}, "clusterflow acted as the connected service account"

    # 2. One minor up, workers resized, gpu added, batch removed, tags and GKE settings changed.
    resized = {**WORKERS, "minNode": 2, "maxNode": 4}
    tags = {"team": "platform", "env": "prod"}
    gke_settings = {
        "releaseChannel": "RAPID",
        "maintenanceWindow": {"startTime": "03:30", "duration": "4h30m"},
        "authorizedNetworks": ["203.0.113.0/24", "198.51.100.7/32"],
    }
    updated = await wait_for_operation(
        api,
        org.headers(),
        await patch(
            api, org, cluster_id, kubernetesVersion="1.32", nodeGroups=[resized, GPU], tags=tags, gke=gke_settings
        ),
    )
    assert updated["status"] == "SUCCEEDED", updated
    cluster = await auditor.cluster()
    assert minor(cluster.current_master_version) == "1.32"
    assert await auditor.pools() == by_name([resized, GPU], "1.32"), "workers upgraded, gpu added at the master's"
    assert dict(cluster.resource_labels) == {**tags, **owner}, "exactly the tags, plus our owner label"
    assert cluster.release_channel.channel == container_v1.ReleaseChannel.Channel.RAPID
    window = cluster.maintenance_policy.window.recurring_window
    assert window.recurrence == "FREQ=DAILY"
    assert window.window.start_time.strftime("%H:%M") == "03:30"
    assert (window.window.end_time - window.window.start_time).total_seconds() == 4.5 * 3600
    networks = cluster.master_authorized_networks_config
    assert networks.enabled
    assert [b.cidr_block for b in networks.cidr_blocks] == ["203.0.113.0/24", "198.51.100.7/32"]
    record = await view(api, org, cluster_id)
    assert record["state"] == "ACTIVE" and record["kubernetesVersion"] == "1.32"
    assert by_name(record["workerNodes"]) == by_name([resized, GPU])
    assert record["tags"] == tags
    assert record["upgradeStatus"]["status"] == "COMPLETED"
    before = await auditor.pools()

    # 3a. Cancelled while a node-pool operation runs: the master reached 1.33 and stays there.
    gke.hold_node_pool_operations()
    cancelled_id = await patch(
        api,
        org,
        cluster_id,
        kubernetesVersion="1.33",
        nodeGroups=[{**resized, "minNode": 3, "maxNode": 6}, GPU, EXTRA],
        tags={**tags, "stage": "canary"},
    )

    async def pool_operation_running() -> bool:
        return bool(gke.held())

    await eventually(pool_operation_running, "a node-pool operation of the update")
    cancel = await api.post(f"/v1/operations/{cancelled_id}/cancel", headers=org.headers())
    assert cancel.status_code == 200, cancel.text

    async def rolling_back() -> bool:
        events = await all_events(api, org.headers(), cancelled_id)
        return any(e["message"] == "NODE_GROUPS rollback started" for e in events)

    await eventually(rolling_back, "the rollback of NODE_GROUPS")
    gke.release()  # GKE finishes the operation the cancelled phase started
    cancelled = await wait_for_operation(api, org.headers(), cancelled_id)
    assert cancelled["status"] == "CANCELLED", cancelled
    cluster = await auditor.cluster()
    assert minor(cluster.current_master_version) == "1.33", "GKE cannot downgrade the master"
    assert await auditor.pools() == before, "pools as they were, the resize that landed after the cancel undone"
    assert dict(cluster.resource_labels) == {**tags, **owner}
    record = await view(api, org, cluster_id)
    assert record["state"] == "ACTIVE" and record["kubernetesVersion"] == "1.33"
    assert by_name(record["workerNodes"]) == by_name([resized, GPU])
    assert record["upgradeStatus"]["status"] == "CANCELLED"
    rollback = record["rollbackStatus"]
    assert rollback["status"] == "COMPLETED" and rollback["controlPlaneVersion"] == "1.33"
    assert sorted(rollback["restored"]) == sorted(["remove extra", "resize workers to 2..4", "tags restored"])
    assert any(item.startswith("control plane stays on 1.33") for item in rollback["notRestored"])
    messages = [e["message"] for e in await all_events(api, org.headers(), cancelled_id)]
    assert any("waiting for GKE operation" in m for m in messages), "the rollback waited for the running one"
    assert cancelled["metadata"]["cleanedUp"] == rollback["restored"]
    assert cancelled["metadata"]["leftBehind"] == rollback["notRestored"]

    # 3b. Fails in NODE_GROUPS (no quota for the new pool) after the resize landed.
    gke.fail_next_node_pool_operation(
        8, 'Insufficient regional quota to satisfy request: resource "CPUS": request requires 2.0', "CREATE_NODE_POOL"
    )
    failed = await wait_for_operation(
        api, org.headers(), await patch(api, org, cluster_id, nodeGroups=[{**resized, "maxNode": 8}, EXTRA])
    )
    assert failed["status"] == "FAILED", failed
    assert failed["error"]["code"] == "QUOTA_EXCEEDED"
    cluster = await auditor.cluster()
    assert minor(cluster.current_master_version) == "1.33"
    assert await auditor.pools() == before, "workers resized back, gpu kept, the pool left in ERROR removed"
    record = await view(api, org, cluster_id)
    assert record["state"] == "ACTIVE" and record["kubernetesVersion"] == "1.33"
    assert by_name(record["workerNodes"]) == by_name([resized, GPU])
    assert record["upgradeStatus"]["status"] == "FAILED"
    rollback = record["rollbackStatus"]
    assert rollback["status"] == "COMPLETED" and rollback["controlPlaneVersion"] == "1.33"
    assert "QUOTA" in rollback["reason"].upper() or "quota" in rollback["reason"]
    assert sorted(rollback["restored"]) == sorted(["add gpu", "resize workers to 2..4", "remove extra"])
    assert rollback["notRestored"] == []
    assert failed["metadata"]["cleanedUp"] == rollback["restored"]
    assert failed["metadata"]["leftBehind"] == []

    # 4. Delete: GKE holds nothing of the cluster; the history stays readable.
    response = await api.delete(f"/v1/clusters/{cluster_id}", headers=org.headers())
    assert response.status_code == 202, response.text
    deleted = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"])
    assert deleted["status"] == "SUCCEEDED", deleted
    with pytest.raises(gexc.NotFound):
        await auditor.cluster()
    assert await auditor.clusters() == []
    history = await api.get(f"/v1/clusters/{cluster_id}/operations", headers=org.headers())
    assert history.status_code == 200, history.text
    operations = history.json()["data"]["operations"]
    assert [(o["operationType"], o["status"]) for o in operations] == [
        ("CLUSTER_DELETE", "SUCCEEDED"),
        ("CLUSTER_UPDATE", "FAILED"),
        ("CLUSTER_UPDATE", "CANCELLED"),
        ("CLUSTER_UPDATE", "SUCCEEDED"),
        ("CLUSTER_DEPLOY", "SUCCEEDED"),
    ]
