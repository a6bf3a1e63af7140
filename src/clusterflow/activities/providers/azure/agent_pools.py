"""AKS agent pools: their properties from a typed node group, creating the missing ones on deploy,
and an update's node-group changes (`UpdateChange.node_groups`).

- ADD creates a User pool with the group's VM size, autoscaling bounds, labels, taints, spot
  priority and zones, at the control plane's current version. It is a conditional create
  (`If-None-Match: *`): a pool someone else created meanwhile is refused by ARM instead of
  overwritten. A pool this update created in an earlier attempt is found and converged.
- RESIZE sets the pool's autoscaling bounds (min/max; the count is kept inside them).
- REMOVE deletes the pool; one already gone is success.
- UPGRADE sets the pool's orchestrator version (never above the control plane; VALIDATE refuses
  that, and so does AKS).

A PUT is sent only for a real difference, so a retried or repeated pass changes nothing that is
already as wanted. A rollback pass runs the same code with the plan's inverse.
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.mgmt.containerservice import models as aks

from clusterflow.activities.providers.azure.session import IN_PROGRESS, AksSession
from clusterflow.activities.providers.azure.spec import SYSTEM, USER, pool_groups
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import azure as azure_catalog
from clusterflow.catalog import minor_of
from clusterflow.contracts.changes import ChangeKind, NodeGroupChange
from clusterflow.contracts.cluster import NodeGroupSize, NodeGroupSpec, Taint
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult


def taint_text(taint: Taint) -> str:
    return f"{taint.key}={taint.value}:{taint.effect}" if taint.value else f"{taint.key}:{taint.effect}"


def pool_profile(group: NodeGroupSpec, mode: str, version: str | None) -> dict[str, Any]:
    """Agent pool properties shared by cluster profiles and standalone agent pools."""
    minimum = max(group.min_nodes, 1) if mode == SYSTEM else group.min_nodes
    spot = group.spot and mode != SYSTEM
    profile: dict[str, Any] = {
        "count": max(minimum, 1) if mode == SYSTEM else minimum,
        "vm_size": group.machine_types[0] if group.machine_types else None,
        "mode": mode,
        "os_type": "Linux",
        "type": "VirtualMachineScaleSets",
        "enable_auto_scaling": True,
        "min_count": minimum,
        "max_count": max(group.max_nodes, minimum, 1),
        "availability_zones": [azure_catalog.aks_zone(z) for z in group.zones] or None,
        "node_labels": dict(group.labels) or None,
        "node_taints": [taint_text(t) for t in group.taints] or None,
        "orchestrator_version": version,
    }
    if spot:
        profile.update(scale_set_priority="Spot", scale_set_eviction_policy="Delete", spot_max_price=-1)
    return profile


def control_version(cluster: aks.ManagedCluster) -> str:
    return cluster.current_kubernetes_version or cluster.kubernetes_version or ""


def pool_version(pool: aks.AgentPool) -> str:
    return pool.current_orchestrator_version or pool.orchestrator_version or ""


async def ensure_pools(inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
    """Deploy NODE_GROUPS: create any pool the managed cluster's PUT did not (normally none)."""
    groups = pool_groups(inp.cluster)
    cluster = await session.wait_settled("agent pools")
    resources = []
    for index, (group, mode) in enumerate(groups):
        pool = await session.get_pool(group.name)
        if pool is None or pool.provisioning_state not in ("Succeeded", *IN_PROGRESS):
            await session.run(
                f"create agent pool {group.name}",
                session.client.agent_pools.begin_create_or_update,
                session.group,
                inp.cluster_name,
                group.name,
                aks.AgentPool(**pool_profile(group, mode, control_version(cluster))),
            )
            verb = "created"
        else:
            verb = "found existing"
        await reporter.event(
            f"pool/{group.name}", f"{verb} agent pool {group.name}", fraction=(index + 1) / len(groups)
        )
        resources.append(f"aks-agent-pool/{group.name}")
    await session.wait_settled("agent pools")
    return PhaseResult(inp.phase, resources=resources)


def _resized(pool: aks.AgentPool, size: NodeGroupSize) -> bool:
    """Set the pool's bounds (count kept inside them); whether anything changed."""
    count = pool.count if pool.count is not None else size.min_nodes
    count = size.desired_nodes if size.desired_nodes is not None else min(max(count, size.min_nodes), size.max_nodes)
    if (pool.min_count, pool.max_count, pool.count, pool.enable_auto_scaling) == (
        size.min_nodes,
        size.max_nodes,
        count,
        True,
    ):
        return False
    pool.min_count, pool.max_count, pool.count, pool.enable_auto_scaling = size.min_nodes, size.max_nodes, count, True
    return True


async def _put(session: AksSession, inp: PhaseInput, what: str, name: str, body: aks.AgentPool, **kw: Any) -> None:
    await session.run(
        what, session.client.agent_pools.begin_create_or_update, session.group, inp.cluster_name, name, body, **kw
    )


async def _apply(inp: PhaseInput, session: AksSession, change: NodeGroupChange, version: str) -> str:
    """One node-group change against the live pool; what happened, for the event."""
    name = change.name
    pool = await session.get_pool(name)
    if change.kind == ChangeKind.ADD:
        if pool is None:
            body = aks.AgentPool(**pool_profile(change.new_group, USER, minor_of(version)))
            await _put(session, inp, f"add agent pool {name}", name, body, match_condition=MatchConditions.IfMissing)
            return f"agent pool {name} added at {minor_of(version)}"
        if pool.provisioning_state in IN_PROGRESS or pool.provisioning_state == "Failed":
            # Ours from an earlier attempt (VALIDATE refused a name already taken): converge it.
            await _put(session, inp, f"add agent pool {name}", name, pool)
            return f"agent pool {name} added"
        return f"agent pool {name} already exists"
    if change.kind == ChangeKind.REMOVE:
        if pool is None:
            return f"agent pool {name} already removed"
        try:
            await session.run(
                f"remove agent pool {name}",
                session.client.agent_pools.begin_delete,
                session.group,
                inp.cluster_name,
                name,
            )
        except ProviderError as err:
            if err.code != ErrorCode.CLOUD_NOT_FOUND:
                raise
        return f"agent pool {name} removed"
    if pool is None:
        raise ProviderError(
            ErrorCode.INVALID_SPEC, f"agent pool {name} does not exist on AKS (add it instead)", retryable=False
        )
    if change.kind == ChangeKind.RESIZE:
        size = change.new_size
        if not _resized(pool, size):
            return f"agent pool {name} already {size.min_nodes}..{size.max_nodes}"
        await _put(session, inp, f"resize agent pool {name}", name, pool)
        return f"agent pool {name} resized to {size.min_nodes}..{size.max_nodes}"
    target = change.target_version
    if minor_of(pool_version(pool)) == minor_of(target):
        return f"agent pool {name} already on {minor_of(target)}"
    pool.orchestrator_version = minor_of(target)
    await _put(session, inp, f"upgrade agent pool {name}", name, pool)
    return f"agent pool {name} upgraded to {minor_of(target)}"


async def update_pools(inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
    """Update NODE_GROUPS (and its rollback): the change's node-group changes, in order."""
    changes = inp.change.node_groups
    cluster = await session.wait_settled("agent pools")
    version = control_version(cluster)
    for index, change in enumerate(changes):
        message = await _apply(inp, session, change, version)
        await reporter.event(f"pool/{change.name}/{change.kind}", message, fraction=(index + 1) / (len(changes) + 1))
    for change in _system_pool_upgrades(inp, cluster, {c.name for c in changes}):
        message = await _apply(inp, session, change, version)
        await reporter.event(f"pool/{change.name}/{change.kind}", message)
    return PhaseResult(inp.phase, resources=[f"aks-agent-pool/{c.name}" for c in changes])


def _system_pool_upgrades(inp: PhaseInput, cluster: aks.ManagedCluster, planned: set[str]) -> list[NodeGroupChange]:
    """The upgrades of System pools the plan does not name: a dedicated system pool (the
    document's `controlPlane.nodeGroup`) is not a data-plane group, yet AKS refuses the next
    control-plane upgrade while any pool is more than a minor behind, so it follows the control
    plane. Forward passes only: a rollback moves no version."""
    version = inp.change.version
    if version is None or inp.stage:
        return []
    return [
        NodeGroupChange.upgrade(str(profile.name), version.target)
        for profile in cluster.agent_pool_profiles or []
        if profile.mode == "System" and profile.name not in planned
    ]
