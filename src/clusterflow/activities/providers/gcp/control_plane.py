"""The GKE cluster: its body from the typed definition, creating (or re-creating a failed)
cluster, checking that a same-named cluster is ours, VERIFY, control-plane changes on update,
and what delete needs to know.

The cluster name is the idempotency key (GKE refuses a second cluster with the same name), and
the `clusterflow-cluster-id` resource label says whose it is. Describe before create: a cluster
carrying our label is ours from an earlier attempt and is waited for, not created again (an
already-exists answer to a create races the same way); a same-named cluster without our label is
someone else's: deploy fails with CLOUD_CONFLICT and delete leaves it alone.

Update CONTROL_PLANE reads the typed `UpdateChange`: the version (the master moves up, never
down), the GKE settings (`change.gke`: release channel, daily maintenance window, master
authorized networks; see `cluster_settings`) and `tags`, which become the cluster's resource
labels exactly, plus our owner label. Each is applied only where the live cluster differs, and
the phase reports the master's version as GKE states it, also on rollback (whose inverse moves
no version: GKE cannot downgrade a master), so the record tells the truth.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from google.cloud import container_v1

from clusterflow.activities.providers.gcp.cluster_settings import (
    CHANNELS,
    authorized_networks,
    live_networks,
    maintenance_policy,
    same_window,
)
from clusterflow.activities.providers.gcp.errors import classify_operation_error
from clusterflow.activities.providers.gcp.node_pools import node_pool
from clusterflow.activities.providers.gcp.session import GkeSession
from clusterflow.activities.providers.gcp.spec import OWNER_LABEL, gke_settings, owner_label, requested_version
from clusterflow.activities.providers.managed_cluster import OwnedCluster
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import minor_of, version_key
from clusterflow.contracts.changes import GkeChange
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import ClusterFacts, PhaseInput, PhaseResult


def _cluster_body(inp: PhaseInput, project: str) -> container_v1.Cluster:
    definition = inp.cluster
    gke = gke_settings(definition)
    labels = {**gke.labels, OWNER_LABEL: owner_label(inp.cluster_id)}
    cluster = container_v1.Cluster(
        name=inp.cluster_name,
        initial_cluster_version=requested_version(definition),
        resource_labels=labels,
        network=gke.network_id or "",
    )
    if gke.release_channel:
        cluster.release_channel = container_v1.ReleaseChannel(channel=CHANNELS[gke.release_channel])
    if gke.autopilot:
        cluster.autopilot = container_v1.Autopilot(enabled=True)
    else:
        cluster.node_pools = [node_pool(g, None) for g in definition.node_groups]
    if gke.subnet is not None:
        cluster.subnetwork = gke.subnet.name
        cluster.ip_allocation_policy = container_v1.IPAllocationPolicy(
            use_ip_aliases=True,
            cluster_secondary_range_name=gke.subnet.pods_range,
            services_secondary_range_name=gke.subnet.services_range,
        )
    if gke.private_cluster:
        cluster.private_cluster_config = container_v1.PrivateClusterConfig(
            enable_private_nodes=True, master_ipv4_cidr_block=gke.master_ipv4_cidr_block or ""
        )
    if gke.authorized_networks:
        cluster.master_authorized_networks_config = authorized_networks(gke.authorized_networks)
    if gke.enable_workload_identity:
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
        body = _cluster_body(inp, gke.project)
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
        facts=ClusterFacts(
            kubernetes_version=minor_of(cluster.current_master_version),
            patch_version=cluster.current_master_version,
            endpoint=f"https://{cluster.endpoint}",
            cloud_resource_id=cluster.self_link,
            account_id=gke.project,
        ),
    )


async def update_control_plane(
    inp: PhaseInput, gke: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
) -> PhaseResult:
    """Update CONTROL_PLANE (or its rollback): the master version, the GKE settings and the
    resource labels, each only where the live cluster differs; reports the master's version."""
    change = inp.change
    done: list[str] = []
    target = change.target_version
    if target and version_key(minor_of(cluster.current_master_version)) < version_key(minor_of(target)):
        await gke.mutate(
            f"upgrade control plane to {target}",
            gke.client.update_cluster,
            name=gke.name,
            update=container_v1.ClusterUpdate(desired_master_version=target),
        )
        done.append(f"control plane upgraded to {target}")
    if change.gke is not None:
        done += await _apply_settings(change.gke, gke, cluster)
    if change.tags is not None:
        done += await _set_labels(change.tags, inp, gke)
    live = await gke.get_cluster()
    if live is None:
        raise ProviderError(ErrorCode.PHASE_FAILED, f"cluster {inp.cluster_name} disappeared", retryable=True)
    reached = minor_of(live.current_master_version)
    summary = "; ".join(done) or "control plane already as requested"
    await reporter.event("control-plane", f"{summary} (master runs {live.current_master_version})", fraction=1.0)
    return PhaseResult(inp.phase, facts=ClusterFacts(kubernetes_version=reached))


async def _apply_settings(settings: GkeChange, gke: GkeSession, cluster: container_v1.Cluster) -> list[str]:
    done: list[str] = []
    channel = settings.release_channel
    if channel is not None and cluster.release_channel.channel != CHANNELS[channel]:
        await gke.mutate(
            f"switch release channel to {channel}",
            gke.client.update_cluster,
            name=gke.name,
            update=container_v1.ClusterUpdate(
                desired_release_channel=container_v1.ReleaseChannel(channel=CHANNELS[channel])
            ),
        )
        done.append(f"release channel {channel}")
    window = settings.maintenance_window
    if window is not None:
        policy = maintenance_policy(window, cluster.maintenance_policy)
        if not same_window(cluster.maintenance_policy, policy):
            await gke.mutate(
                "set maintenance window",
                gke.client.set_maintenance_policy,
                request=container_v1.SetMaintenancePolicyRequest(name=gke.name, maintenance_policy=policy),
            )
            done.append(f"daily maintenance window {window.start_time} UTC for {window.duration}")
    cidrs = settings.authorized_networks
    if cidrs is not None and live_networks(cluster) != tuple(cidrs):
        await gke.mutate(
            "set master authorized networks",
            gke.client.update_cluster,
            name=gke.name,
            update=container_v1.ClusterUpdate(desired_master_authorized_networks_config=authorized_networks(cidrs)),
        )
        done.append(f"authorized networks {', '.join(cidrs) or 'unrestricted'}")
    return done


async def _set_labels(tags: Mapping[str, str], inp: PhaseInput, gke: GkeSession) -> list[str]:
    """The cluster's resource labels become exactly the wanted tags plus our owner label."""
    fresh = await gke.get_cluster()
    labels = {**tags, OWNER_LABEL: owner_label(inp.cluster_id)}
    if fresh is None or dict(fresh.resource_labels) == labels:
        return []
    await gke.mutate(
        "set labels",
        gke.client.set_labels,
        request=container_v1.SetLabelsRequest(
            name=gke.name, resource_labels=labels, label_fingerprint=fresh.label_fingerprint
        ),
    )
    return ["labels set"]


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
