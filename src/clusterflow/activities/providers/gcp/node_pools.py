"""GKE node pools: the pool body from a typed node group, creating the missing ones on deploy,
and the node-group changes of an update (`UpdateChange.node_groups`).

A node group's `min_nodes`/`max_nodes` are the group's total bounds, so they map onto GKE's
*total* autoscaling limits (`totalMinNodeCount`/`totalMaxNodeCount`, across the pool's zones),
not the per-zone ones; `initialNodeCount` is per zone, enough to reach the minimum.

Update, per change kind (the same code runs an update's inverse on rollback):
- ADD creates the pool with the group's machine type, autoscaling bounds, labels, taints, spot
  and zones, at the master's current version. A pool of that name found on GKE is ours from an
  earlier attempt (update VALIDATE refused names already taken), so it is waited for, not
  created again; one left in ERROR by a failed create fails the phase permanently.
- REMOVE deletes the pool; a pool already gone is success.
- RESIZE sets the pool's autoscaling bounds (and its size, if the change names one).
- UPGRADE moves the pool's nodes to the version (the master's full version when they share a
  minor); never past the master, which GKE refuses.
Each step compares the live pool first, so a re-run changes nothing twice. GKE runs one
operation per cluster at a time, so the steps run one after another (`GkeSession.mutate`).
"""

from __future__ import annotations

import math

from google.cloud import container_v1

from clusterflow.activities.providers.gcp.session import GkeSession
from clusterflow.activities.providers.gcp.spec import gke_settings
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import minor_of, version_key
from clusterflow.contracts.changes import ChangeKind, NodeGroupChange
from clusterflow.contracts.cluster import NodeGroupSize, NodeGroupSpec
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult

TAINT_EFFECTS = {
    "NoSchedule": container_v1.NodeTaint.Effect.NO_SCHEDULE,
    "PreferNoSchedule": container_v1.NodeTaint.Effect.PREFER_NO_SCHEDULE,
    "NoExecute": container_v1.NodeTaint.Effect.NO_EXECUTE,
}


def autoscaling(size: NodeGroupSize) -> container_v1.NodePoolAutoscaling:
    """The group's bounds as GKE's total (all zones) autoscaling limits."""
    return container_v1.NodePoolAutoscaling(
        enabled=True,
        total_min_node_count=size.min_nodes,
        total_max_node_count=size.max_nodes,
        location_policy=container_v1.NodePoolAutoscaling.LocationPolicy.BALANCED,
    )


def node_pool(group: NodeGroupSpec, version: str | None) -> container_v1.NodePool:
    """The GKE node pool of a node group; `version` None or "" follows the master."""
    config = container_v1.NodeConfig(
        machine_type=group.machine_types[0] if group.machine_types else "",
        labels=dict(group.labels),
        taints=[container_v1.NodeTaint(key=t.key, value=t.value, effect=TAINT_EFFECTS[t.effect]) for t in group.taints],
        spot=group.spot,
    )
    zones = len(group.zones) or 1
    return container_v1.NodePool(
        name=group.name,
        initial_node_count=max(math.ceil(group.min_nodes / zones), 1),
        version=version or "",
        config=config,
        autoscaling=autoscaling(group.size),
        locations=list(group.zones),
    )


def pool_status(pool: container_v1.NodePool) -> str:
    return str(container_v1.NodePool.Status(pool.status).name)


async def ensure_node_pools(inp: PhaseInput, gke: GkeSession, reporter: PhaseReporter) -> PhaseResult:
    """Deploy NODE_GROUPS: create any pool the cluster was not created with, wait for all."""
    cluster_definition = inp.cluster
    if gke_settings(cluster_definition).autopilot:
        await reporter.event("autopilot", "Autopilot provisions nodes on demand; no node pools", fraction=1.0)
        return PhaseResult(inp.phase)
    groups = cluster_definition.node_groups
    cluster = await gke.get_cluster()
    if cluster is None:
        raise ProviderError(ErrorCode.PHASE_FAILED, f"cluster {inp.cluster_name} does not exist", retryable=True)
    present = {p.name for p in cluster.node_pools}
    for index, group in enumerate(groups):
        if group.name not in present:
            await create_pool(gke, group, None)
            verb = "created"
        else:
            verb = "found existing"
        await reporter.event(
            f"pool/{group.name}", f"{verb} node pool {group.name}", fraction=(index + 1) / (len(groups) + 1)
        )
    wanted = {g.name for g in groups}
    await gke.wait_cluster(
        "node pools", lambda c: all(pool_status(p) == "RUNNING" for p in c.node_pools if p.name in wanted)
    )
    return PhaseResult(inp.phase, resources=[f"gke-node-pool/{gke.pool_name(n)}" for n in sorted(wanted)])


async def create_pool(gke: GkeSession, group: NodeGroupSpec, version: str | None) -> None:
    try:
        await gke.mutate(
            f"create node pool {group.name}",
            gke.client.create_node_pool,
            parent=gke.name,
            node_pool=node_pool(group, version),
        )
    except ProviderError as err:
        if err.code != ErrorCode.CLOUD_CONFLICT:  # already exists: an earlier attempt made it
            raise


async def update_node_groups(
    inp: PhaseInput, gke: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
) -> PhaseResult:
    """Update NODE_GROUPS (or its rollback): apply `inp.change.node_groups` in order."""
    changes = inp.change.node_groups
    pools = {p.name: p for p in cluster.node_pools}
    for index, change in enumerate(changes):
        message = await _apply(gke, cluster, pools.get(change.name), change)
        await reporter.event(
            f"pool/{change.name}/{change.kind.value}", message, fraction=(index + 1) / (len(changes) + 1)
        )
    return PhaseResult(inp.phase, resources=[f"gke-node-pool/{gke.pool_name(c.name)}" for c in changes])


async def _apply(
    gke: GkeSession, cluster: container_v1.Cluster, pool: container_v1.NodePool | None, change: NodeGroupChange
) -> str:
    name = change.name
    if change.kind == ChangeKind.ADD:
        if pool is None:
            await create_pool(gke, change.new_group, cluster.current_master_version)
            return f"node pool {name} added at {cluster.current_master_version}"
        await _wait_pool(gke, name)
        return f"node pool {name} found existing"
    if change.kind == ChangeKind.REMOVE:
        if pool is None:
            return f"node pool {name} already absent"
        try:
            await gke.mutate(f"remove node pool {name}", gke.client.delete_node_pool, name=gke.pool_name(name))
        except ProviderError as err:
            if err.code != ErrorCode.CLOUD_NOT_FOUND:
                raise
        return f"node pool {name} removed"
    if pool is None:
        raise ProviderError(
            ErrorCode.CLOUD_NOT_FOUND,
            f"node pool {name} does not exist on GKE: cannot {change.describe()}",
            retryable=False,
        )
    if change.kind == ChangeKind.RESIZE:
        return await _resize(gke, pool, change.new_size)
    return await _upgrade(gke, cluster, pool, change.target_version)


async def _wait_pool(gke: GkeSession, name: str) -> None:
    """Wait for a pool an earlier attempt created; one left in ERROR fails the phase."""

    def settled(cluster: container_v1.Cluster) -> bool:
        pool = next((p for p in cluster.node_pools if p.name == name), None)
        return pool is None or pool_status(pool) in ("RUNNING", "ERROR", "RUNNING_WITH_ERROR")

    cluster = await gke.wait_cluster(f"node pool {name}", settled)
    pool = next((p for p in cluster.node_pools if p.name == name), None)
    if pool is not None and pool_status(pool) == "ERROR":
        raise ProviderError(
            ErrorCode.CLOUD_OPERATION_FAILED,
            f"node pool {name} is in ERROR on GKE: {pool.status_message or 'its creation failed'}",
            retryable=False,
        )


async def _resize(gke: GkeSession, pool: container_v1.NodePool, size: NodeGroupSize) -> str:
    name = pool.name
    done = []
    live = pool.autoscaling
    if not live.enabled or (live.total_min_node_count, live.total_max_node_count) != (size.min_nodes, size.max_nodes):
        await gke.mutate(
            f"set autoscaling of node pool {name}",
            gke.client.set_node_pool_autoscaling,
            request=container_v1.SetNodePoolAutoscalingRequest(name=gke.pool_name(name), autoscaling=autoscaling(size)),
        )
        done.append(f"autoscaling {size.min_nodes}..{size.max_nodes}")
    if size.desired_nodes is not None:
        await gke.mutate(
            f"resize node pool {name}",
            gke.client.set_node_pool_size,
            request=container_v1.SetNodePoolSizeRequest(name=gke.pool_name(name), node_count=size.desired_nodes),
        )
        done.append(f"size {size.desired_nodes}")
    return f"node pool {name}: " + (", ".join(done) or "already at the requested size")


async def _upgrade(gke: GkeSession, cluster: container_v1.Cluster, pool: container_v1.NodePool, target: str) -> str:
    name = pool.name
    master = cluster.current_master_version
    if version_key(minor_of(target)) > version_key(minor_of(master)):
        raise ProviderError(
            ErrorCode.INVALID_SPEC,
            f"node pool {name} cannot move to {target}: the master runs {master} and GKE refuses nodes newer "
            "than the master",
            retryable=False,
        )
    if minor_of(pool.version) == minor_of(target):
        return f"node pool {name} already on {pool.version}"
    version = master if minor_of(master) == minor_of(target) else target
    await gke.mutate(
        f"upgrade node pool {name} to {version}",
        gke.client.update_node_pool,
        request=container_v1.UpdateNodePoolRequest(
            name=gke.pool_name(name), node_version=version, image_type=pool.config.image_type or "COS_CONTAINERD"
        ),
    )
    return f"node pool {name} upgraded to {version}"
