"""What the simulated cloud builds from a cluster definition, and which resources a phase owns.

Pure functions over the typed definition (no database, no waiting), so the provider's phases
only decide when to create, wait and delete. Node groups are stored in the document's shape
(`NodeGroupSpec.to_document`), as the cluster record keeps them, so the two can be compared.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.catalog.local import DEFAULT_KUBERNETES_VERSION, MACHINE_TYPES
from clusterflow.catalog.spec_checks import SpecProblem
from clusterflow.contracts.cluster import ClusterDefinition, NodeGroupSpec
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput
from clusterflow.contracts.phases import Phase

ADDONS = ("coredns", "kube-proxy", "metrics-server")
CONTROL_PLANE = ("control_plane", "control-plane")

# Which simulated resource kinds each phase owns, for teardown (in teardown order).
KINDS_BY_PHASE: dict[str, tuple[str, ...]] = {
    Phase.ADDONS: ("addon",),
    Phase.NODE_GROUPS: ("node_group",),
    Phase.CONTROL_PLANE: ("control_plane",),
    Phase.NETWORK: ("subnet", "network"),
}


def deploy_version(cluster: ClusterDefinition) -> str:
    return cluster.kubernetes_version or DEFAULT_KUBERNETES_VERSION


def invalid(problems: list[SpecProblem]) -> ProviderError:
    return ProviderError(
        ErrorCode.INVALID_SPEC, "; ".join(f"{p.field}: {p.message}" for p in problems), retryable=False
    )


def check_machine_types(group: NodeGroupSpec) -> None:
    for machine in group.machine_types:
        if machine not in MACHINE_TYPES:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                f"machine type {machine!r} of node group {group.name!r} is unknown to the "
                f"local provider (offered: {', '.join(MACHINE_TYPES)})",
                retryable=False,
            )


def resources_for(inp: PhaseInput) -> list[tuple[str, str, dict[str, Any]]]:
    cluster = inp.cluster
    if inp.phase == Phase.NETWORK:
        return [
            ("network", "vpc", {"cidr": "10.0.0.0/16"}),
            ("subnet", "subnet-a", {"cidr": "10.0.0.0/19"}),
            ("subnet", "subnet-b", {"cidr": "10.0.32.0/19"}),
        ]
    if inp.phase == Phase.CONTROL_PLANE:
        return [(*CONTROL_PLANE, {"kubernetesVersion": deploy_version(cluster)})]
    if inp.phase == Phase.NODE_GROUPS:
        return [("node_group", group.name, group.to_document()) for group in cluster.node_groups]
    if inp.phase == Phase.ADDONS:
        return [("addon", name, {}) for name in ADDONS]
    return []
