"""What the simulated cloud reads from a cluster document, and which resources a phase owns.

Pure functions over the spec (no database, no waiting), so the provider's phases only decide
when to create, wait and delete.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.catalog.local import KUBERNETES_VERSIONS, MACHINE_TYPES
from clusterflow.workflows.contracts import ErrorCode, Phase, PhaseInput

ADDONS = ("coredns", "kube-proxy", "metrics-server")

# Which simulated resource kinds each phase owns, for teardown (in teardown order).
KINDS_BY_PHASE: dict[str, tuple[str, ...]] = {
    Phase.ADDONS: ("addon",),
    Phase.NODE_GROUPS: ("node_group",),
    Phase.CONTROL_PLANE: ("control_plane",),
    Phase.NETWORK: ("subnet", "network"),
}


def local_block(spec: dict[str, Any]) -> dict[str, Any]:
    return dict((spec.get("provisioner") or {}).get("local") or {})


def node_groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    cluster_spec = spec.get("clusterSpec") or {}
    return list(((cluster_spec.get("dataPlane") or {}).get("nodeGroups")) or [])


def validate(spec: dict[str, Any], version: str) -> None:
    if version not in KUBERNETES_VERSIONS:
        raise ProviderError(
            ErrorCode.INVALID_SPEC,
            f"kubernetesVersion {version} is not offered by the local provider "
            f"(supported: {', '.join(KUBERNETES_VERSIONS)})",
            retryable=False,
        )
    control_plane = ((spec.get("clusterSpec") or {}).get("controlPlane") or {}).get("nodeGroup") or {}
    for group in [control_plane, *node_groups(spec)]:
        for machine in group.get("machineTypes") or []:
            if machine not in MACHINE_TYPES:
                raise ProviderError(
                    ErrorCode.INVALID_SPEC,
                    f"machine type {machine!r} of node group {group.get('name')!r} is unknown to the "
                    f"local provider (offered: {', '.join(MACHINE_TYPES)})",
                    retryable=False,
                )


def resources_for(inp: PhaseInput) -> list[tuple[str, str, dict[str, Any]]]:
    if inp.phase == Phase.NETWORK:
        return [
            ("network", "vpc", {"cidr": "10.0.0.0/16"}),
            ("subnet", "subnet-a", {"cidr": "10.0.0.0/19"}),
            ("subnet", "subnet-b", {"cidr": "10.0.32.0/19"}),
        ]
    if inp.phase == Phase.CONTROL_PLANE:
        return [("control_plane", "control-plane", {})]
    if inp.phase == Phase.NODE_GROUPS:
        return [("node_group", group["name"], group) for group in node_groups(inp.spec)]
    if inp.phase == Phase.ADDONS:
        return [("addon", name, {}) for name in ADDONS]
    return []
