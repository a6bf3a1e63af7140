"""What an update changes, as the planner writes it and every provider reads it.

A `NodeGroupChange` carries exactly the fields its kind needs (checked on construction, also
when Temporal's data converter rebuilds it from history): ADD the whole group to create, RESIZE
the new bounds, REMOVE the group as it was (so its inverse can recreate it), UPGRADE the
version. An `UpdatePlan` holds the forward change and its inverse, and the cluster as the
record says it is before and should be after.

The inverse never moves the control plane: EKS, GKE and AKS refuse to downgrade it, so a
rollback restores node groups and tags and leaves the control plane on the version it reached.
The record then says so (`rollbackStatus`, `leftBehind`) instead of claiming a downgrade.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from clusterflow.contracts.cluster import NodeGroupSize, NodeGroupSpec, Simulation
from clusterflow.contracts.phases import Phase


class ChangeKind(StrEnum):
    ADD = "ADD"
    RESIZE = "RESIZE"
    REMOVE = "REMOVE"
    UPGRADE = "UPGRADE"


@dataclass(frozen=True)
class NodeGroupChange:
    kind: ChangeKind
    name: str
    group: NodeGroupSpec | None = None  # ADD: the group to create; REMOVE: the group being removed
    size: NodeGroupSize | None = None  # RESIZE: the new bounds
    version: str | None = None  # UPGRADE: the Kubernetes version the group's nodes move to

    def __post_init__(self) -> None:
        needs = {
            ChangeKind.ADD: self.group,
            ChangeKind.REMOVE: self.group,
            ChangeKind.RESIZE: self.size,
            ChangeKind.UPGRADE: self.version,
        }[ChangeKind(self.kind)]
        if needs is None:
            raise ValueError(f"a {self.kind} change of node group {self.name} is missing what it needs")
        if self.group is not None and self.group.name != self.name:
            raise ValueError(f"change of {self.name} carries node group {self.group.name}")

    @classmethod
    def add(cls, group: NodeGroupSpec) -> NodeGroupChange:
        return cls(ChangeKind.ADD, group.name, group=group)

    @classmethod
    def remove(cls, group: NodeGroupSpec) -> NodeGroupChange:
        return cls(ChangeKind.REMOVE, group.name, group=group)

    @classmethod
    def resize(cls, name: str, size: NodeGroupSize) -> NodeGroupChange:
        return cls(ChangeKind.RESIZE, name, size=size)

    @classmethod
    def upgrade(cls, name: str, version: str) -> NodeGroupChange:
        return cls(ChangeKind.UPGRADE, name, version=version)

    @property
    def new_group(self) -> NodeGroupSpec:
        """The group an ADD creates."""
        assert self.group is not None
        return self.group

    @property
    def new_size(self) -> NodeGroupSize:
        """The bounds a RESIZE sets."""
        assert self.size is not None
        return self.size

    @property
    def target_version(self) -> str:
        """The version an UPGRADE moves to."""
        assert self.version is not None
        return self.version

    def describe(self) -> str:
        if self.kind == ChangeKind.RESIZE:
            return f"resize {self.name} to {self.new_size.min_nodes}..{self.new_size.max_nodes}"
        if self.kind == ChangeKind.UPGRADE:
            return f"upgrade {self.name} to {self.version}"
        return f"{self.kind.lower()} {self.name}"


@dataclass(frozen=True)
class VersionChange:
    """A control-plane upgrade: one minor version at a time, never down (clouds refuse both)."""

    current: str
    target: str


@dataclass(frozen=True)
class MaintenanceWindow:
    """A daily window: starts at `start_time` (HH:MM, UTC) and lasts `duration` (e.g. `4h`)."""

    start_time: str
    duration: str


@dataclass(frozen=True)
class GkeChange:
    release_channel: str | None = None
    maintenance_window: MaintenanceWindow | None = None
    authorized_networks: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AksChange:
    auto_upgrade_channel: str | None = None
    node_os_upgrade_channel: str | None = None
    authorized_ip_ranges: tuple[str, ...] | None = None


@dataclass(frozen=True)
class UpdateChange:
    """What one pass of an update applies: the forward change, or its inverse on rollback."""

    version: VersionChange | None = None
    node_groups: tuple[NodeGroupChange, ...] = ()
    tags: Mapping[str, str] | None = None  # the cluster's whole tag set after the change
    gke: GkeChange | None = None
    aks: AksChange | None = None
    simulation: Simulation | None = None  # the local simulator's pacing and failure injection

    @property
    def target_version(self) -> str | None:
        return self.version.target if self.version else None

    def of_kind(self, kind: ChangeKind) -> tuple[NodeGroupChange, ...]:
        return tuple(c for c in self.node_groups if c.kind == kind)


@dataclass(frozen=True)
class ClusterShape:
    """The cluster as the record states it: version, data-plane node groups, tags."""

    kubernetes_version: str | None
    node_groups: tuple[NodeGroupSpec, ...]
    tags: Mapping[str, str] = field(default_factory=dict)

    def with_version(self, version: str | None) -> ClusterShape:
        return ClusterShape(version, self.node_groups, self.tags)

    def record_fields(self) -> dict[str, Any]:
        """The cluster record's columns for this shape (`workerNodes` in the document's shape)."""
        return {
            "kubernetesVersion": self.kubernetes_version,
            "workerNodes": [g.to_document() for g in self.node_groups],
            "tags": dict(self.tags),
        }


@dataclass(frozen=True)
class UpdatePlan:
    """An update as it runs: phases, the change, its inverse, and the cluster before and after.

    `inverse` undoes `change` except the control plane, which stays on the version it reached.
    """

    phases: tuple[Phase, ...]
    change: UpdateChange
    inverse: UpdateChange
    before: ClusterShape
    after: ClusterShape


@dataclass(frozen=True)
class UpdateRequest:
    """A K8sClusterUpdate spec, validated by the API and typed for the planner.

    `node_groups` None leaves the data plane as it is; otherwise it is the wanted set (new names
    are added, missing ones removed). Provider blocks the provider cannot apply are refused by
    the planner, by name, instead of being ignored.
    """

    kubernetes_version: str | None = None
    node_groups: tuple[NodeGroupSpec, ...] | None = None
    tags: Mapping[str, str] | None = None
    gke: GkeChange | None = None
    aks: AksChange | None = None
    simulation: Simulation | None = None
    # Fields accepted by the document that no provider can apply yet, by their document path.
    unsupported: tuple[str, ...] = ()
    allow_downgrade: bool = False
    max_surge: str = "1"
    max_unavailable: str = "0"
