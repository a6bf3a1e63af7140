"""The GKE cluster: its body from the spec, creating (or re-creating a failed) cluster, checking
that a same-named cluster is ours, VERIFY, control-plane changes on update, and what delete
needs to know.

The cluster name is the idempotency key (GKE refuses a second cluster with the same name), and
the `clusterflow-cluster-id` resource label says whose it is. Describe before create: a cluster
carrying our label is ours from an earlier attempt and is waited for, not created again (an
already-exists answer to a create races the same way); a same-named cluster without our label is
someone else's: deploy fails with CLOUD_CONFLICT and delete leaves it alone.

Update reads `PhaseInput.change`: `kubernetesVersion`, `releaseChannel`, `maintenanceWindow`
(`{"dailyStartTime": "03:00"}` or `{"startTime", "endTime", "recurrence"}`), `tags`, and for
VALIDATE `autopilot` and the node groups' change types. VALIDATE checks the upgrade path against
the catalog (one minor at a time); CONTROL_PLANE upgrades the master, switches the release
channel, sets the maintenance window and labels, each only when the live cluster differs.
"""

from __future__ import annotations

import functools
from typing import Any

from google.cloud import container_v1

from clusterflow.activities.providers.gcp.errors import classify_operation_error
from clusterflow.activities.providers.gcp.node_pools import node_pool
from clusterflow.activities.providers.gcp.session import GkeSession
from clusterflow.activities.providers.gcp.spec import (
    OWNER_LABEL,
    gke_block,
    node_groups,
    owner_label,
    requested_version,
)
from clusterflow.activities.providers.managed_cluster import OwnedCluster
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import gcp as gcp_catalog
from clusterflow.catalog import minor_of, version_key
from clusterflow.workflows.contracts import ErrorCode, PhaseInput, PhaseResult

_CHANNELS = {
    "RAPID": container_v1.ReleaseChannel.Channel.RAPID,
    "REGULAR": container_v1.ReleaseChannel.Channel.REGULAR,
    "STABLE": container_v1.ReleaseChannel.Channel.STABLE,
    "EXTENDED": container_v1.ReleaseChannel.Channel.EXTENDED,
}


def _cluster_body(inp: PhaseInput, project: str, version: str) -> container_v1.Cluster:
    gke = gke_block(inp.spec)
    labels = {**(gke.get("labels") or {}), OWNER_LABEL: owner_label(inp.cluster_id)}
    cluster = container_v1.Cluster(
        name=inp.cluster_name,
        initial_cluster_version=version,
        resource_labels=labels,
        network=gke.get("networkId") or "",
    )
    if gke.get("releaseChannel"):
        cluster.release_channel = container_v1.ReleaseChannel(channel=_CHANNELS[gke["releaseChannel"]])
    if gke.get("autopilot"):
        cluster.autopilot = container_v1.Autopilot(enabled=True)
    else:
        cluster.node_pools = [node_pool(g, None) for g in node_groups(inp.spec)]
    subnet = gke.get("subnet") or {}
    if subnet:
        cluster.subnetwork = subnet.get("name") or ""
        cluster.ip_allocation_policy = container_v1.IPAllocationPolicy(
            use_ip_aliases=True,
            cluster_secondary_range_name=subnet.get("podsRange") or "",
            services_secondary_range_name=subnet.get("servicesRange") or "",
        )
    if gke.get("privateCluster"):
        cluster.private_cluster_config = container_v1.PrivateClusterConfig(
            enable_private_nodes=True, master_ipv4_cidr_block=gke.get("masterIPv4CidrBlock") or ""
        )
    if gke.get("authorizedNetworks"):
        cluster.master_authorized_networks_config = container_v1.MasterAuthorizedNetworksConfig(
            enabled=True,
            cidr_blocks=[
                container_v1.MasterAuthorizedNetworksConfig.CidrBlock(cidr_block=c) for c in gke["authorizedNetworks"]
            ],
        )
    if gke.get("enableWorkloadIdentity"):
        cluster.workload_identity_config = container_v1.WorkloadIdentityConfig(workload_pool=f"{project}.svc.id.goog")
    return cluster


def check_owner(cluster: container_v1.Cluster, inp: PhaseInput) -> None:
    owner = cluster.resource_labels.get(OWNER_LABEL)
    if owner != owner_label(inp.cluster_id):
        raise ProviderError(
            ErrorCode.CLOUD_CONFLICT,
            f"a GKE cluster named {inp.cluster_name} already exists in {inp.region} and is not managed by "
            f"cluster {inp.cluster_id}. Remedy: choose another clusterName or delete the existing cluster",
            retryable=False,
        )


async def create_cluster(inp: PhaseInput, gke: GkeSession, reporter: PhaseReporter) -> PhaseResult:
    existing = await gke.get_cluster()
    if existing is not None and container_v1.Cluster.Status(existing.status).name == "ERROR":
        check_owner(existing, inp)
        failure = classify_operation_error(0, existing.status_message or "cluster is in ERROR", "create cluster")
        if not failure.retryable and failure.code == ErrorCode.QUOTA_EXCEEDED:
            raise failure
        # GKE cannot repair a cluster whose creation failed: remove ours and create it again.
        await reporter.event("recreate", f"GKE cluster {inp.cluster_name} is in ERROR; deleting it to retry")
        await gke.mutate(f"delete failed cluster {inp.cluster_name}", gke.client.delete_cluster, name=gke.name)
        existing = None
    if existing is None:
        body = _cluster_body(inp, gke.project, requested_version(inp.spec))
        try:
            await gke.mutate(
                f"create cluster {inp.cluster_name}", gke.client.create_cluster, parent=gke.parent, cluster=body
            )
            verb = "created"
        except ProviderError as err:
            if err.code != ErrorCode.CLOUD_CONFLICT:
                raise
            # Created by a concurrent or lost attempt: check it is ours and wait for it.
            existing = await gke.get_cluster()
            if existing is None:
                raise ProviderError(ErrorCode.CLOUD_BUSY, err.message, retryable=True) from err
            verb = "found existing"
    else:
        verb = "found existing"
    if existing is not None:
        check_owner(existing, inp)
    cluster = await gke.wait_cluster("control plane", lambda c: container_v1.Cluster.Status(c.status).name == "RUNNING")
    await reporter.event(
        "cluster", f"{verb} GKE cluster {inp.cluster_name} ({cluster.current_master_version})", fraction=1.0
    )
    return PhaseResult(inp.phase, resources=[f"gke-cluster/{gke.name}"])


async def verify(inp: PhaseInput, gke: GkeSession) -> PhaseResult:
    cluster = await gke.wait_cluster("verify", lambda c: container_v1.Cluster.Status(c.status).name == "RUNNING")
    return PhaseResult(
        inp.phase,
        outputs={
            "cluster": {
                "kubernetesVersion": minor_of(cluster.current_master_version),
                "currentMasterVersion": cluster.current_master_version,
                "endpoint": f"https://{cluster.endpoint}",
                "selfLink": cluster.self_link,
            }
        },
    )


def validate_change(inp: PhaseInput, cluster: container_v1.Cluster) -> None:
    change = inp.change
    versions = gcp_catalog.CATALOG.kubernetes["gke"]

    def invalid(message: str) -> ProviderError:
        return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)

    if "autopilot" in change and bool(change["autopilot"]) != bool(cluster.autopilot.enabled):
        raise invalid("autopilot cannot be switched on or off on an existing GKE cluster")
    if change.get("releaseChannel") and change["releaseChannel"] not in versions.channels:
        raise invalid(f"releaseChannel {change['releaseChannel']} is unknown")
    target = change.get("kubernetesVersion")
    if target:
        current = cluster.current_master_version
        if version_key(minor_of(target)) < version_key(minor_of(current)):
            raise invalid(f"GKE cannot downgrade the control plane from {current} to {target}")
        if minor_of(target) != minor_of(current) and versions.upgrade_path(current, target) is None:
            raise invalid(
                f"no upgrade path from {minor_of(current)} to {target}: the control plane moves one minor "
                f"version at a time (see GET /v1/kubernetes-versions?cloudProvider=gcp&provisionerType=gke)"
            )
    for group in change.get("nodeGroups") or []:
        if group.get("changeType") not in ("ADD", "RESIZE", "REMOVE", "UPGRADE"):
            raise invalid(f"node group {group.get('name')!r}: unknown changeType {group.get('changeType')!r}")


async def update_control_plane(
    inp: PhaseInput, gke: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
) -> PhaseResult:
    change = inp.change
    done: list[str] = []
    target = change.get("kubernetesVersion")
    if target and minor_of(cluster.current_master_version) != minor_of(target):
        await gke.mutate(
            f"upgrade control plane to {target}",
            gke.client.update_cluster,
            name=gke.name,
            update=container_v1.ClusterUpdate(desired_master_version=target),
        )
        done.append(f"control plane upgraded to {target}")
    channel = change.get("releaseChannel")
    if channel and cluster.release_channel.channel != _CHANNELS[channel]:
        await gke.mutate(
            f"switch release channel to {channel}",
            gke.client.update_cluster,
            name=gke.name,
            update=container_v1.ClusterUpdate(
                desired_release_channel=container_v1.ReleaseChannel(channel=_CHANNELS[channel])
            ),
        )
        done.append(f"release channel {channel}")
    window = change.get("maintenanceWindow")
    if window:
        await gke.mutate(
            "set maintenance window",
            gke.client.set_maintenance_policy,
            name=gke.name,
            maintenance_policy=_maintenance_policy(window),
        )
        done.append("maintenance window set")
    tags = change.get("tags")
    if tags is not None:
        fresh = await gke.get_cluster()
        labels = {**tags, OWNER_LABEL: owner_label(inp.cluster_id)}
        if fresh is not None and dict(fresh.resource_labels) != labels:
            await gke.mutate(
                "set labels",
                gke.client.set_labels,
                request=container_v1.SetLabelsRequest(
                    name=gke.name, resource_labels=labels, label_fingerprint=fresh.label_fingerprint
                ),
            )
            done.append("labels set")
    await reporter.event("control-plane", "; ".join(done) or "control plane already as requested", fraction=1.0)
    return PhaseResult(inp.phase, outputs={"controlPlane": done})


def _maintenance_policy(window: dict[str, Any]) -> container_v1.MaintenancePolicy:
    if window.get("dailyStartTime"):
        return container_v1.MaintenancePolicy(
            window=container_v1.MaintenanceWindow(
                daily_maintenance_window=container_v1.DailyMaintenanceWindow(start_time=window["dailyStartTime"])
            )
        )
    from google.protobuf.timestamp_pb2 import Timestamp

    start, end = Timestamp(), Timestamp()
    start.FromJsonString(window["startTime"])
    end.FromJsonString(window["endTime"])
    return container_v1.MaintenancePolicy(
        window=container_v1.MaintenanceWindow(
            recurring_window=container_v1.RecurringTimeWindow(
                window=container_v1.TimeWindow(start_time=start, end_time=end),
                recurrence=window.get("recurrence") or "FREQ=WEEKLY;BYDAY=SA,SU",
            )
        )
    )


async def owned_cluster(gke: GkeSession) -> OwnedCluster | None:
    """The cluster as delete sees it (`managed_cluster.delete_owned_cluster`)."""
    cluster = await gke.get_cluster()
    if cluster is None:
        return None
    return OwnedCluster(
        owner=cluster.resource_labels.get(OWNER_LABEL),
        delete=functools.partial(gke.mutate, f"delete cluster {gke.cluster}", gke.client.delete_cluster, name=gke.name),
        resource=f"gke-cluster/{gke.name}",
    )
