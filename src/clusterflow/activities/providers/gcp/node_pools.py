"""GKE node pools: the pool body from a node group, creating the missing ones, and node-group
changes on update.

Update reads `PhaseInput.change["nodeGroups"]`: `[{"name", "changeType": "ADD" | "RESIZE" |
"REMOVE" | "UPGRADE", "machineTypes", "minNode", "maxNode", "desiredSize",
"kubernetesVersion"}]` (an UPGRADE without a version follows the master). Each step compares
the live pool first, so a re-run changes nothing twice.
"""

from __future__ import annotations

from typing import Any

from google.cloud import container_v1

from clusterflow.activities.providers.gcp.session import GkeSession
from clusterflow.activities.providers.gcp.spec import gke_block, node_groups
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import minor_of
from clusterflow.workflows.contracts import ErrorCode, PhaseInput, PhaseResult

_TAINT_EFFECTS = {
    "NoSchedule": container_v1.NodeTaint.Effect.NO_SCHEDULE,
    "PreferNoSchedule": container_v1.NodeTaint.Effect.PREFER_NO_SCHEDULE,
    "NoExecute": container_v1.NodeTaint.Effect.NO_EXECUTE,
}


def node_pool(group: dict[str, Any], version: str | None) -> container_v1.NodePool:
    machine_types = group.get("machineTypes") or []
    config = container_v1.NodeConfig(
        machine_type=machine_types[0] if machine_types else "",
        labels=dict(group.get("labels") or {}),
        taints=[
            container_v1.NodeTaint(key=t["key"], value=t.get("value") or "", effect=_TAINT_EFFECTS[t["effect"]])
            for t in group.get("taints") or []
        ],
        spot=group.get("instanceType") == "spot",
    )
    minimum, maximum = int(group.get("minNode", 1)), int(group.get("maxNode", 1))
    return container_v1.NodePool(
        name=group["name"],
        initial_node_count=max(minimum, 1),
        version=version or "",
        config=config,
        autoscaling=container_v1.NodePoolAutoscaling(enabled=True, min_node_count=minimum, max_node_count=maximum),
        locations=list(group.get("availabilityZones") or []),
    )


async def ensure_node_pools(inp: PhaseInput, gke: GkeSession, reporter: PhaseReporter) -> PhaseResult:
    if gke_block(inp.spec).get("autopilot"):
        await reporter.event("autopilot", "Autopilot provisions nodes on demand; no node pools", fraction=1.0)
        return PhaseResult(inp.phase)
    groups = node_groups(inp.spec)
    cluster = await gke.get_cluster()
    if cluster is None:
        raise ProviderError(ErrorCode.PHASE_FAILED, f"cluster {inp.cluster_name} does not exist", retryable=True)
    present = {p.name for p in cluster.node_pools}
    for index, group in enumerate(groups):
        if group["name"] not in present:
            await create_pool(gke, group)
            verb = "created"
        else:
            verb = "found existing"
        await reporter.event(
            f"pool/{group['name']}", f"{verb} node pool {group['name']}", fraction=(index + 1) / (len(groups) + 1)
        )
    wanted = {g["name"] for g in groups}
    await gke.wait_cluster(
        "node pools",
        lambda c: all(
            container_v1.NodePool.Status(p.status).name == "RUNNING" for p in c.node_pools if p.name in wanted
        ),
    )
    return PhaseResult(inp.phase, resources=[f"gke-node-pool/{gke.pool_name(n)}" for n in sorted(wanted)])


async def create_pool(gke: GkeSession, group: dict[str, Any], version: str | None = None) -> None:
    try:
        await gke.mutate(
            f"create node pool {group['name']}",
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
    changes = list(inp.change.get("nodeGroups") or [])
    pools = {p.name: p for p in cluster.node_pools}
    for index, group in enumerate(changes):
        name, kind = group["name"], group["changeType"]
        pool = pools.get(name)
        message = f"node pool {name}: nothing to do"
        if kind == "ADD" and pool is None:
            await create_pool(gke, group, group.get("kubernetesVersion"))
            message = f"node pool {name} added"
        elif kind == "REMOVE" and pool is not None:
            try:
                await gke.mutate(f"remove node pool {name}", gke.client.delete_node_pool, name=gke.pool_name(name))
            except ProviderError as err:
                if not (err.code == ErrorCode.CLOUD_NOT_FOUND):
                    raise
            message = f"node pool {name} removed"
        elif kind == "RESIZE" and pool is not None:
            message = await _resize(gke, pool, group)
        elif kind == "UPGRADE" and pool is not None:
            target = group.get("kubernetesVersion") or inp.change.get("kubernetesVersion")
            target = target or minor_of(cluster.current_master_version)
            if minor_of(pool.version) != minor_of(target):
                await gke.mutate(
                    f"upgrade node pool {name} to {target}",
                    gke.client.update_node_pool,
                    request=container_v1.UpdateNodePoolRequest(
                        name=gke.pool_name(name),
                        node_version=target,
                        image_type=pool.config.image_type or "COS_CONTAINERD",
                    ),
                )
                message = f"node pool {name} upgraded to {target}"
        elif pool is None and kind != "REMOVE":
            raise ProviderError(
                ErrorCode.INVALID_SPEC, f"node pool {name} does not exist (use changeType ADD)", retryable=False
            )
        await reporter.event(f"pool/{name}/{kind}", message, fraction=(index + 1) / (len(changes) + 1))
    return PhaseResult(inp.phase, resources=[f"gke-node-pool/{gke.pool_name(c['name'])}" for c in changes])


async def _resize(gke: GkeSession, pool: container_v1.NodePool, group: dict[str, Any]) -> str:
    name = pool.name
    minimum = int(group.get("minNode", pool.autoscaling.min_node_count))
    maximum = int(group.get("maxNode", pool.autoscaling.max_node_count))
    done = []
    if (pool.autoscaling.min_node_count, pool.autoscaling.max_node_count) != (minimum, maximum):
        await gke.mutate(
            f"set autoscaling of node pool {name}",
            gke.client.set_node_pool_autoscaling,
            request=container_v1.SetNodePoolAutoscalingRequest(
                name=gke.pool_name(name),
                autoscaling=container_v1.NodePoolAutoscaling(
                    enabled=True, min_node_count=minimum, max_node_count=maximum
                ),
            ),
        )
        done.append(f"autoscaling {minimum}..{maximum}")
    if group.get("desiredSize") is not None:
        await gke.mutate(
            f"resize node pool {name}",
            gke.client.set_node_pool_size,
            request=container_v1.SetNodePoolSizeRequest(name=gke.pool_name(name), node_count=int(group["desiredSize"])),
        )
        done.append(f"size {group['desiredSize']}")
    return f"node pool {name}: " + (", ".join(done) or "already at the requested size")
