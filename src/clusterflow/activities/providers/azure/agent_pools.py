"""AKS agent pools: their properties from a node group, creating the missing ones, and node-group
changes on update.

Update reads `PhaseInput.change["nodeGroups"]`: `[{"name", "changeType": "ADD" | "RESIZE" |
"REMOVE" | "UPGRADE", "machineTypes", "minNode", "maxNode", "desiredSize",
"kubernetesVersion"}]` (an UPGRADE without a version follows the control plane).
"""

from __future__ import annotations

from typing import Any

from azure.mgmt.containerservice import models as aks

from clusterflow.activities.providers.azure.session import IN_PROGRESS, AksSession
from clusterflow.activities.providers.azure.spec import node_groups, system_group
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import azure as azure_catalog
from clusterflow.catalog import minor_of
from clusterflow.workflows.contracts import ErrorCode, PhaseInput, PhaseResult


def pool_profile(group: dict[str, Any], mode: str, version: str | None) -> dict[str, Any]:
    """Agent pool properties shared by cluster profiles and standalone agent pools."""
    minimum, maximum = int(group.get("minNode", 1)), int(group.get("maxNode", 1))
    if mode == "System":
        minimum = max(minimum, 1)
    machine_types = group.get("machineTypes") or []
    taints = [
        f"{t['key']}={t.get('value') or ''}:{t['effect']}" if t.get("value") else f"{t['key']}:{t['effect']}"
        for t in group.get("taints") or []
    ]
    spot = group.get("instanceType") == "spot" and mode != "System"
    return {
        "count": max(minimum, 1) if mode == "System" else minimum,
        "vm_size": machine_types[0] if machine_types else "",
        "mode": mode,
        "os_type": "Linux",
        "type": "VirtualMachineScaleSets",
        "enable_auto_scaling": True,
        "min_count": minimum,
        "max_count": max(maximum, minimum, 1),
        "availability_zones": [azure_catalog.aks_zone(z) for z in group.get("availabilityZones") or []] or None,
        "node_labels": dict(group.get("labels") or {}) or None,
        "node_taints": taints or None,
        "scale_set_priority": "Spot" if spot else None,
        "orchestrator_version": version,
    }


async def ensure_pools(inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
    groups = [system_group(inp.spec), *node_groups(inp.spec)]
    seen: set[str] = set()
    resources = []
    for index, group in enumerate(groups):
        name = group["name"]
        if name in seen:
            continue
        seen.add(name)
        pool = await session.get_pool(name)
        if pool is None or pool.provisioning_state not in ("Succeeded", *IN_PROGRESS):
            mode = "System" if index == 0 else "User"
            await session.run(
                f"create agent pool {name}",
                session.client.agent_pools.begin_create_or_update,
                session.group,
                inp.cluster_name,
                name,
                aks.AgentPool(**pool_profile(group, mode, None)),
            )
            verb = "created"
        else:
            verb = "found existing"
        await reporter.event(f"pool/{name}", f"{verb} agent pool {name}", fraction=(index + 1) / len(groups))
        resources.append(f"aks-agent-pool/{name}")
    await session.wait_settled("agent pools")
    return PhaseResult(inp.phase, resources=resources)


async def update_pools(inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
    changes = list(inp.change.get("nodeGroups") or [])
    cluster = await session.wait_settled("agent pools")
    control_version = cluster.current_kubernetes_version or cluster.kubernetes_version or ""
    for index, group in enumerate(changes):
        name, kind = group["name"], group["changeType"]
        pool = await session.get_pool(name)
        message = f"agent pool {name}: nothing to do"
        put: aks.AgentPool | None = None
        if kind == "ADD" and pool is None:
            put = aks.AgentPool(**pool_profile(group, "User", group.get("kubernetesVersion")))
            message = f"agent pool {name} added"
        elif kind == "REMOVE" and pool is not None:
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
            message = f"agent pool {name} removed"
        elif kind == "RESIZE" and pool is not None:
            minimum = int(group.get("minNode", pool.min_count or 0))
            maximum = int(group.get("maxNode", pool.max_count or minimum))
            size = group.get("desiredSize")
            if (pool.min_count, pool.max_count) != (minimum, maximum) or (size is not None and pool.count != size):
                pool.min_count, pool.max_count, pool.enable_auto_scaling = minimum, maximum, True
                if size is not None:
                    pool.count = int(size)
                put = pool
                message = f"agent pool {name} resized to {minimum}..{maximum}"
        elif kind == "UPGRADE" and pool is not None:
            target = group.get("kubernetesVersion") or inp.change.get("kubernetesVersion") or control_version
            if minor_of(pool.current_orchestrator_version or pool.orchestrator_version or "") != minor_of(target):
                pool.orchestrator_version = target
                put = pool
                message = f"agent pool {name} upgraded to {target}"
        elif pool is None and kind != "REMOVE":
            raise ProviderError(
                ErrorCode.INVALID_SPEC, f"agent pool {name} does not exist (use changeType ADD)", retryable=False
            )
        if put is not None:
            await session.run(
                f"{kind.lower()} agent pool {name}",
                session.client.agent_pools.begin_create_or_update,
                session.group,
                inp.cluster_name,
                name,
                put,
            )
        await reporter.event(f"pool/{name}/{kind}", message, fraction=(index + 1) / (len(changes) + 1))
    return PhaseResult(inp.phase, resources=[f"aks-agent-pool/{c['name']}" for c in changes])
