"""What a cluster is made of, as every provider receives it: node groups and provisioner settings.

The API validates the K8sCluster document (pydantic, camelCase JSON) and turns it into a
`ClusterDefinition` once; workflows carry that to each provider's phases. Providers read typed
fields (`definition.eks.vpc_id`, `group.max_nodes`) instead of looking up string keys in the
document, so a field the API accepts and no provider reads shows up as an unused attribute,
and a provider cannot read a key the planner never writes.

`from_spec`, `from_document` and `to_document` translate the document's camelCase names: the
cluster record keeps node groups in the document's shape (`workerNodes` in the API's view).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str  # NoSchedule, PreferNoSchedule or NoExecute
    value: str = ""


@dataclass(frozen=True)
class NodeGroupSize:
    """Autoscaling bounds of a node group; `desired_nodes` None leaves the current count (clamped)."""

    min_nodes: int
    max_nodes: int
    desired_nodes: int | None = None

    def __post_init__(self) -> None:
        if self.min_nodes < 0 or self.max_nodes < 1 or self.min_nodes > self.max_nodes:
            raise ValueError(f"node group size {self.min_nodes}..{self.max_nodes} is not a valid range")
        if self.desired_nodes is not None and not self.min_nodes <= self.desired_nodes <= self.max_nodes:
            raise ValueError(f"desired size {self.desired_nodes} is outside {self.min_nodes}..{self.max_nodes}")


@dataclass(frozen=True)
class NodeGroupSpec:
    """One node group as requested: machine types, autoscaling bounds, labels, taints, zones."""

    name: str
    machine_types: tuple[str, ...]
    min_nodes: int
    max_nodes: int
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    zones: tuple[str, ...] = ()
    spot: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a node group needs a name")
        NodeGroupSize(self.min_nodes, self.max_nodes)

    @property
    def size(self) -> NodeGroupSize:
        return NodeGroupSize(self.min_nodes, self.max_nodes)

    def resized(self, size: NodeGroupSize) -> NodeGroupSpec:
        return replace(self, min_nodes=size.min_nodes, max_nodes=size.max_nodes)

    @classmethod
    def from_document(cls, group: Mapping[str, Any]) -> NodeGroupSpec:
        return cls(
            name=str(group["name"]),
            machine_types=tuple(str(m) for m in group.get("machineTypes") or ()),
            min_nodes=int(group.get("minNode", 1)),
            max_nodes=int(group.get("maxNode", max(int(group.get("minNode", 1)), 1))),
            labels={str(k): str(v) for k, v in (group.get("labels") or {}).items()},
            taints=tuple(
                Taint(key=str(t["key"]), effect=str(t["effect"]), value=str(t.get("value") or ""))
                for t in group.get("taints") or ()
            ),
            zones=tuple(str(z) for z in group.get("availabilityZones") or ()),
            spot=group.get("instanceType") == "spot",
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "machineTypes": list(self.machine_types),
            "minNode": self.min_nodes,
            "maxNode": self.max_nodes,
            "labels": dict(self.labels),
            "taints": [
                {"key": t.key, "effect": t.effect, **({"value": t.value} if t.value else {})} for t in self.taints
            ],
            "availabilityZones": list(self.zones),
            "instanceType": "spot" if self.spot else "ondemand",
        }


# --- provisioner settings, one per provisioner type ------------------------------------------


@dataclass(frozen=True)
class EksSubnet:
    group: str  # the key it was listed under in `provisioner.eks.subnets`
    id: str
    type: str = "private"  # public or private


@dataclass(frozen=True)
class EksSettings:
    account_id: str | None = None
    kubernetes_version: str | None = None
    ami_family: str | None = None
    vpc_id: str | None = None
    vpc_cidr: str | None = None
    subnets: tuple[EksSubnet, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    # The API endpoint reachable only from inside the VPC (endpointPrivateAccess, no public access).
    private_cluster: bool = False


@dataclass(frozen=True)
class GkeSubnet:
    name: str = ""
    pods_range: str = ""
    services_range: str = ""


@dataclass(frozen=True)
class GkeSettings:
    project_id: str | None = None
    kubernetes_version: str | None = None
    release_channel: str | None = None
    autopilot: bool = False
    private_cluster: bool = False
    enable_workload_identity: bool = False
    network_id: str | None = None
    master_ipv4_cidr_block: str | None = None
    subnet: GkeSubnet | None = None
    authorized_networks: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AksSettings:
    subscription_id: str | None = None
    resource_group: str | None = None
    kubernetes_version: str | None = None
    network_plugin: str | None = None
    network_plugin_mode: str | None = None
    private_cluster: bool = False
    enable_oidc_issuer: bool = False
    enable_workload_identity: bool = False
    auto_upgrade_channel: str | None = None
    node_os_upgrade_channel: str | None = None
    authorized_ip_ranges: tuple[str, ...] = ()
    vnet_subnet_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Simulation:
    """The local simulator's pacing and failure injection (`provisioner.local`, an update's `local`)."""

    phase_seconds: float | None = None
    fail_at: str | None = None  # a phase name
    fail_times: int | None = None  # attempts that fail there before one succeeds; None: every attempt


@dataclass(frozen=True)
class LocalSettings:
    kubernetes_version: str | None = None
    simulation: Simulation = field(default_factory=Simulation)


@dataclass(frozen=True)
class ClusterDefinition:
    """The deploy document's spec, validated and typed: what every provider phase builds from.

    The cluster's labels (`metadata.labels`, `contracts/labels.py`) are not here: no provider
    builds from them, they change without an operation, and whoever selects by them reads the
    cluster row. What the cloud's resources carry is `tags`."""

    name: str
    provider: str
    region: str
    provisioner_type: str
    node_groups: tuple[NodeGroupSpec, ...]
    control_plane_group: NodeGroupSpec | None = None
    local: LocalSettings | None = None
    eks: EksSettings | None = None
    gke: GkeSettings | None = None
    aks: AksSettings | None = None

    @property
    def kubernetes_version(self) -> str | None:
        """The version the document asks for, if it names one (each provider has its default)."""
        block = self.local or self.eks or self.gke or self.aks
        return block.kubernetes_version if block is not None else None

    @property
    def tags(self) -> Mapping[str, str]:
        """The user's tags on the cluster's cloud resources (GKE calls them resource labels);
        an update's `tags` replaces exactly these."""
        if self.eks is not None:
            return self.eks.tags
        if self.gke is not None:
            return self.gke.labels
        if self.aks is not None:
            return self.aks.tags
        return {}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ClusterDefinition:
        """From the K8sCluster `spec` as JSON (camelCase), as the API validated it."""
        provisioner = spec.get("provisioner") or {}
        topology = spec.get("clusterSpec") or {}
        control = (topology.get("controlPlane") or {}).get("nodeGroup")
        return cls(
            name=str(spec["clusterName"]),
            provider=str(spec["provider"]),
            region=str(spec["region"]),
            provisioner_type=str(provisioner.get("type") or spec["provider"]),
            node_groups=tuple(
                NodeGroupSpec.from_document(g) for g in (topology.get("dataPlane") or {}).get("nodeGroups") or ()
            ),
            control_plane_group=NodeGroupSpec.from_document(control) if control else None,
            local=_local(provisioner["local"]) if provisioner.get("local") is not None else None,
            eks=_eks(provisioner["eks"]) if provisioner.get("eks") is not None else None,
            gke=_gke(provisioner["gke"]) if provisioner.get("gke") is not None else None,
            aks=_aks(provisioner["aks"]) if provisioner.get("aks") is not None else None,
        )


def _text(block: Mapping[str, Any], key: str) -> str | None:
    value = block.get(key)
    return None if value in (None, "") else str(value)


def _strings(block: Mapping[str, Any], key: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (block.get(key) or {}).items()}


def simulation_from(block: Mapping[str, Any]) -> Simulation:
    seconds, times = block.get("phaseSeconds"), block.get("failTimes")
    return Simulation(
        phase_seconds=None if seconds is None else float(seconds),
        fail_at=_text(block, "failAt"),
        fail_times=None if times is None else int(times),
    )


def _local(block: Mapping[str, Any]) -> LocalSettings:
    return LocalSettings(kubernetes_version=_text(block, "kubernetesVersion"), simulation=simulation_from(block))


def _eks(block: Mapping[str, Any]) -> EksSettings:
    return EksSettings(
        account_id=_text(block, "accountId"),
        kubernetes_version=_text(block, "kubernetesVersion"),
        ami_family=_text(block, "amiFamily"),
        vpc_id=_text(block, "vpcId"),
        vpc_cidr=_text(block, "vpcCIDR"),
        subnets=tuple(
            EksSubnet(group=str(group), id=str(s["id"]), type=str(s.get("type") or "private"))
            for group, listed in (block.get("subnets") or {}).items()
            for s in listed
            if s.get("id")
        ),
        tags=_strings(block, "tags"),
        private_cluster=bool(block.get("privateCluster")),
    )


def _gke(block: Mapping[str, Any]) -> GkeSettings:
    subnet = block.get("subnet")
    return GkeSettings(
        project_id=_text(block, "projectId"),
        kubernetes_version=_text(block, "kubernetesVersion"),
        release_channel=_text(block, "releaseChannel"),
        autopilot=bool(block.get("autopilot")),
        private_cluster=bool(block.get("privateCluster")),
        enable_workload_identity=bool(block.get("enableWorkloadIdentity")),
        network_id=_text(block, "networkId"),
        master_ipv4_cidr_block=_text(block, "masterIPv4CidrBlock"),
        subnet=GkeSubnet(
            name=str(subnet.get("name") or ""),
            pods_range=str(subnet.get("podsRange") or ""),
            services_range=str(subnet.get("servicesRange") or ""),
        )
        if subnet
        else None,
        authorized_networks=tuple(str(c) for c in block.get("authorizedNetworks") or ()),
        labels=_strings(block, "labels"),
    )


def _aks(block: Mapping[str, Any]) -> AksSettings:
    return AksSettings(
        subscription_id=_text(block, "subscriptionId"),
        resource_group=_text(block, "resourceGroup"),
        kubernetes_version=_text(block, "kubernetesVersion"),
        network_plugin=_text(block, "networkPlugin"),
        network_plugin_mode=_text(block, "networkPluginMode"),
        private_cluster=bool(block.get("privateCluster")),
        enable_oidc_issuer=bool(block.get("enableOidcIssuer")),
        enable_workload_identity=bool(block.get("enableWorkloadIdentity")),
        auto_upgrade_channel=_text(block, "autoUpgradeChannel"),
        node_os_upgrade_channel=_text(block, "nodeOsUpgradeChannel"),
        authorized_ip_ranges=tuple(str(r) for r in block.get("authorizedIPRanges") or ()),
        vnet_subnet_id=_text(block, "vnetSubnetId"),
        tags=_strings(block, "tags"),
    )
