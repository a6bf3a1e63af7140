"""What upstream Kubernetes changes at each minor, shared by every provider's catalog.

Keyed by the minor an upgrade moves *to*; these become the `warnings` of `upgradePaths`.
"""

from __future__ import annotations

UPGRADE_WARNINGS: dict[str, tuple[str, ...]] = {
    "1.29": (
        "flowcontrol.apiserver.k8s.io/v1beta2 is removed: migrate FlowSchema and PriorityLevelConfiguration to v1",
    ),
    "1.30": ("the ValidatingAdmissionPolicy API is GA; v1beta1 manifests keep working but are deprecated",),
    "1.31": (
        "in-tree cloud provider code is removed: nodes need the external cloud-controller-manager",
        "kubelet --keep-terminated-pod-volumes is removed",
    ),
    "1.32": ("flowcontrol.apiserver.k8s.io/v1beta3 is removed: migrate to v1",),
    "1.33": ("the Endpoints API is deprecated in favour of EndpointSlice; update controllers that watch Endpoints",),
    "1.34": ("cgroup v1 support is in maintenance mode: move nodes to cgroup v2",),
}
