"""The K8sCluster document (deploy) and the cluster view, after the reference API.

Validation lives in the models so every entry point (deploy, dry run, legacy flat body)
refuses the same inputs with the same field paths.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    RootModel,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from clusterflow.api.schemas.common import Sparse, Strict, absent
from clusterflow.contracts.changes import AksChange, ChangeKind, GkeChange, UpdateRequest
from clusterflow.contracts.changes import MaintenanceWindow as ChangeWindow
from clusterflow.contracts.cluster import NodeGroupSpec, simulation_from
from clusterflow.contracts.labels import MAX_LABELS, key_problem, value_problem
from clusterflow.contracts.operations import ClusterState
from clusterflow.contracts.phases import Phase

API_VERSION: Final = "clusterflow.dev/v1"

DnsName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=50, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$"),
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=63)]
Region = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
KubeVersion = Annotated[str, StringConstraints(max_length=9, pattern=r"^1\.[0-9]{1,2}(\.[0-9]{1,3})?$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a CIDR block such as 203.0.113.0/24") from err
    return value


Cidr = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_cidr)]

Provider = Literal["local", "aws", "gcp", "azure"]
PhaseName = Literal["VALIDATE", "NETWORK", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"]
ProvisionerType = Literal["local", "eks", "gke", "aks", "selfHosted"]

PROVISIONERS_BY_PROVIDER: dict[str, tuple[str, ...]] = {
    "local": ("local",),
    "aws": ("eks", "selfHosted"),
    "gcp": ("gke", "selfHosted"),
    "azure": ("aks", "selfHosted"),
}


class Taint(Strict):
    key: Label
    value: Annotated[str, StringConstraints(max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    operator: Literal["Equal", "Exists"] = Field(
        default="Equal", description="Accepted for the reference's documents; a taint is always key=value:effect"
    )

    @field_validator("operator")
    @classmethod
    def _taints_have_no_operator(cls, value: str) -> str:
        if value != "Equal":
            raise ValueError("a taint has no operator (Exists belongs to tolerations): give key, value and effect")
        return value


class NodeGroup(Strict):
    name: DnsName
    machineTypes: Annotated[list[ShortText], Field(min_length=1, max_length=10)]
    minNode: Annotated[int, Field(ge=0, le=1000)]
    maxNode: Annotated[int, Field(ge=1, le=1000)]
    labels: Annotated[dict[Label, Annotated[str, StringConstraints(max_length=63)]], Field(max_length=64)] = {}
    taints: Annotated[list[Taint], Field(max_length=32)] = []
    availabilityZones: Annotated[list[ShortText], Field(max_length=8)] = []
    instanceType: Literal["ondemand", "spot"] = "ondemand"

    @field_validator("maxNode")
    @classmethod
    def _max_not_below_min(cls, value: int, info: Any) -> int:
        minimum = info.data.get("minNode")
        if minimum is not None and value < minimum:
            raise ValueError(f"maxNode ({value}) must not be below minNode ({minimum})")
        return value


class ControlPlane(Strict):
    nodeGroup: NodeGroup


class DataPlane(Strict):
    nodeGroups: Annotated[list[NodeGroup], Field(min_length=1, max_length=50)]

    @field_validator("nodeGroups")
    @classmethod
    def _unique_names(cls, groups: list[NodeGroup]) -> list[NodeGroup]:
        seen: set[str] = set()
        for group in groups:
            if group.name in seen:
                raise ValueError(f"node group name {group.name!r} is used twice")
            seen.add(group.name)
        return groups


class ClusterTopology(Strict):
    controlPlane: ControlPlane | None = None
    dataPlane: DataPlane


class Credentials(Strict):
    type: Literal["static", "dynamic", "vault"]
    data: Annotated[dict[ShortText, Annotated[str, StringConstraints(max_length=4096)]], Field(max_length=32)] = {}


class LocalProvisioner(Strict):
    kubernetesVersion: KubeVersion | None = None
    phaseSeconds: Annotated[float, Field(ge=0, le=3600)] | None = Field(
        default=None, description="Seconds each simulated phase takes (default from settings)"
    )
    failAt: PhaseName | None = Field(default=None, description="Phase at which the simulation fails")
    failTimes: Annotated[int, Field(ge=0, le=100)] | None = Field(
        default=None, description="Attempts that fail at failAt before one succeeds; absent: all fail"
    )


class EksSubnet(Strict):
    id: ShortText | None = None
    cidr: ShortText | None = None
    type: Literal["public", "private"] = "private"


class EksProvisioner(Strict):
    accountId: Annotated[str, StringConstraints(max_length=12, pattern=r"^[0-9]{12}$")] | None = None
    kubernetesVersion: KubeVersion | None = None
    amiFamily: ShortText | None = Field(
        default=None, description="Node image: AmazonLinux2023, AmazonLinux2 or Bottlerocket (default: EKS's choice)"
    )
    privateCluster: bool = Field(default=False, description="API server reachable only from inside the VPC")
    vpcId: ShortText | None = None
    vpcCIDR: ShortText | None = None
    subnets: Annotated[dict[ShortText, Annotated[list[EksSubnet], Field(max_length=16)]], Field(max_length=8)] = {}
    tags: dict[Label, Annotated[str, StringConstraints(max_length=256)]] = {}
    credentials: Credentials | None = None


class GkeSubnet(Strict):
    name: ShortText | None = None
    podsRange: ShortText | None = None
    servicesRange: ShortText | None = None


class GkeProvisioner(Strict):
    projectId: ShortText | None = None
    kubernetesVersion: KubeVersion | None = None
    releaseChannel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] | None = None
    autopilot: bool = False
    privateCluster: bool = False
    enableWorkloadIdentity: bool = False
    networkId: ShortText | None = None
    networkCIDR: ShortText | None = None
    masterIPv4CidrBlock: ShortText | None = None
    subnet: GkeSubnet | None = None
    authorizedNetworks: Annotated[list[Cidr], Field(max_length=50)] = []
    labels: dict[Label, Annotated[str, StringConstraints(max_length=63)]] = {}
    credentials: Credentials | None = None


class AksProvisioner(Strict):
    subscriptionId: ShortText | None = None
    resourceGroup: ShortText | None = None
    kubernetesVersion: KubeVersion | None = None
    networkPlugin: Literal["azure", "kubenet", "none"] | None = None
    networkPluginMode: Literal["overlay"] | None = None
    privateCluster: bool = False
    enableOidcIssuer: bool = False
    enableWorkloadIdentity: bool = False
    autoUpgradeChannel: Literal["none", "patch", "stable", "rapid", "node-image"] | None = None
    nodeOsUpgradeChannel: Literal["None", "Unmanaged", "SecurityPatch", "NodeImage"] | None = None
    authorizedIPRanges: Annotated[list[Cidr], Field(max_length=200)] = []
    vnetSubnetId: ShortText | None = None
    tags: dict[Label, Annotated[str, StringConstraints(max_length=256)]] = {}
    credentials: Credentials | None = None


class SelfHostedProvisioner(Strict):
    accountId: ShortText | None = None
    bucketName: ShortText | None = None
    kubernetesVersion: KubeVersion | None = None
    networkId: ShortText | None = None
    credentials: Credentials | None = None


class Provisioner(Strict):
    type: ProvisionerType
    local: LocalProvisioner | None = None
    eks: EksProvisioner | None = None
    gke: GkeProvisioner | None = None
    aks: AksProvisioner | None = None
    selfHosted: SelfHostedProvisioner | None = None

    @model_validator(mode="after")
    def _only_own_block(self) -> Provisioner:
        for block in ("local", "eks", "gke", "aks", "selfHosted"):
            if block != self.type and getattr(self, block) is not None:
                raise ValueError(f"provisioner.{block} is given but provisioner.type is {self.type!r}")
        return self

    def kubernetes_version(self) -> str | None:
        block = getattr(self, self.type)
        return getattr(block, "kubernetesVersion", None) if block is not None else None


class ClusterSpec(Strict):
    clusterName: DnsName
    provider: Provider
    region: Region
    provisioner: Provisioner
    clusterSpec: ClusterTopology

    @field_validator("provisioner")
    @classmethod
    def _provisioner_matches_provider(cls, provisioner: Provisioner, info: Any) -> Provisioner:
        provider = info.data.get("provider")
        allowed = PROVISIONERS_BY_PROVIDER.get(provider or "", ())
        if provider and provisioner.type not in allowed:
            raise ValueError(
                f"provisioner.type {provisioner.type!r} does not run on provider {provider!r} "
                f"(allowed: {', '.join(allowed)})"
            )
        return provisioner


def _label_key(key: str) -> str:
    problem = key_problem(key)
    if problem is not None:
        raise ValueError(problem)
    return key


def _label_value(value: str) -> str:
    problem = value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
ClusterLabelKey = Annotated[
    str,
    AfterValidator(_label_key),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 317,
            # No `pattern`: as a map's key it would become `patternProperties`, which typed
            # clients cannot read; the rule is in words, and the API checks it.
            "description": "A Kubernetes label key: an optional DNS-subdomain prefix (lowercase, 253 characters "
            "or less) and '/', then a name of 63 characters or less: letters, digits, '-', '_', '.', beginning "
            "and ending with a letter or digit",
        }
    ),
]
ClusterLabelValue = Annotated[
    str,
    AfterValidator(_label_value),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 63,
            "pattern": rf"^({_LABEL_NAME})?$",
            "description": "A Kubernetes label value: empty, or 63 characters or less",
        }
    ),
]
ClusterLabels = Annotated[
    dict[ClusterLabelKey, ClusterLabelValue],
    Field(
        max_length=MAX_LABELS,
        description="The cluster's labels in clusterflow (Kubernetes label rules), selected by "
        "`labelSelector`, approval rules and fleet update runs. Not sent to the cloud: tags on cloud "
        "resources are the provisioner's `tags` (GKE: `labels`).",
    ),
]


class ClusterMetadata(Strict):
    labels: ClusterLabels = {}


class MetadataPatch(Strict):
    labels: Annotated[dict[ClusterLabelKey, ClusterLabelValue | None], Field(max_length=2 * MAX_LABELS)] | None = Field(
        default=None, description="Keys to set; a null value removes its key, `labels: null` removes them all"
    )


class ClusterMergePatch(Strict):
    """`PATCH /v1/clusters/{id}` with `Content-Type: application/merge-patch+json` (RFC 7386):
    changes the cluster's labels at once, without an operation. Only `metadata.labels` may be
    given; spec changes are a `K8sClusterUpdate` (application/json)."""

    metadata: MetadataPatch | None = None


ApiVersion = Literal["clusterflow.dev/v1", "platform.astropulse.io/v1"]
"""Ours, and the reference API's, accepted as an alias so its clients work unchanged."""


class K8sCluster(Strict):
    apiVersion: ApiVersion
    kind: Literal["K8sCluster"]
    metadata: ClusterMetadata | None = None
    spec: ClusterSpec


class DeployDryRunResult(BaseModel):
    """A deploy dry run's answer: `checks` says what was verified (the spec against the provider's
    catalog, the cloud account or project the deploy would use); what only the cloud can tell
    (quotas, live capacity) is checked by the deploy's VALIDATE phase."""

    valid: bool
    message: str
    checks: list[str]


class ClusterStatusDetail(BaseModel):
    status: Literal["UNSPECIFIED", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"] = "UNSPECIFIED"
    reason: str | None = None
    suggestedAction: str | None = None
    startedAt: str | None = None
    completedAt: str | None = None
    controlPlaneVersion: str | None = Field(
        default=None, description="rollbackStatus: the control plane's version after the rollback"
    )
    restored: list[str] | None = Field(default=None, description="rollbackStatus: what the rollback restored")
    notRestored: list[str] | None = Field(
        default=None, description="rollbackStatus: what stays as the update left it (clouds cannot downgrade)"
    )


class TaintView(Sparse):
    key: str
    value: str | None = absent()
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    operator: Literal["Equal"] | None = absent("As a deploy document gave it; a taint is always key=value:effect")


class NodeGroupView(Sparse):
    """A node group as the cluster record holds it: as deployed, then as updates left it (keys
    the deploy document left out stay out)."""

    name: str
    machineTypes: list[str]
    minNode: int
    maxNode: int
    labels: dict[str, str] | None = absent("Kubernetes labels on the group's nodes")
    taints: list[TaintView] | None = absent()
    availabilityZones: list[str] | None = absent()
    instanceType: Literal["ondemand", "spot"] | None = absent()


ViewProvider = Literal["local", "aws", "gcp", "azure", "registered"]
"""The deployable providers, and `registered` for clusters an agent connected."""
ViewProvisionerType = Literal["local", "eks", "gke", "aks", "selfHosted", "agent"]


class ClusterView(BaseModel):
    clusterId: str
    clusterName: str
    provider: ViewProvider
    provisionerType: ViewProvisionerType
    region: str
    kubernetesVersion: str | None
    state: ClusterState
    controlPlaneNode: NodeGroupView | None
    workerNodes: list[NodeGroupView]
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tags (GKE: resource labels) on the cluster's cloud resources"
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="The cluster's own labels in clusterflow (set by deploy `metadata.labels`, changed by a "
        "merge-patch PATCH), selected by `labelSelector`; never written to the cloud",
    )
    activeOperationId: str | None
    upgradeStatus: ClusterStatusDetail | None
    rollbackStatus: ClusterStatusDetail | None
    createdTimestamp: str
    lastUpdatedTimestamp: str
    deletedTimestamp: str | None = None


class RegistrationSpec(BaseModel):
    clusterName: str
    architecture: str
    region: str | None = None
    kubernetesVersion: str | None = None


class DeployedClusterDocument(BaseModel):
    """A deployed cluster's document, as it was sent (defaults not filled in)."""

    apiVersion: ApiVersion
    kind: Literal["K8sCluster"]
    metadata: ClusterMetadata | None = None
    spec: ClusterSpec


class RegisteredClusterDocument(BaseModel):
    """A registered cluster's document: what its registration said about it."""

    apiVersion: ApiVersion
    kind: Literal["ClusterRegistration"]
    metadata: ClusterMetadata | None = None
    spec: RegistrationSpec


class ClusterSpecDocument(
    RootModel[Annotated[DeployedClusterDocument | RegisteredClusterDocument, Field(discriminator="kind")]]
):
    """The document a cluster was deployed (`K8sCluster`) or registered (`ClusterRegistration`) from."""


def cluster_spec_document(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored document, checked against `ClusterSpecDocument` and returned as stored (the
    models fill in defaults the sender did not give; the record keeps what was sent)."""
    kind = stored.get("kind")
    model = RegisteredClusterDocument if kind == "ClusterRegistration" else DeployedClusterDocument
    return model.model_validate(stored).model_dump(mode="json", exclude_unset=True)


Surge = Annotated[str, StringConstraints(max_length=4, pattern=r"^(100|[1-9]?[0-9])%$|^[0-9]{1,3}$")]


class UpdateConfig(Strict):
    allowDowngrade: bool = False
    dryRun: bool = False
    generateReport: bool = False
    maxSurge: Surge | None = None
    maxUnavailable: Surge | None = None
    outputFormat: Literal["json"] = "json"


_DURATION = re.compile(r"^(?:([0-9]{1,2})h)?(?:([0-9]{1,4})m)?$")


class MaintenanceWindow(Strict):
    """A daily window: it starts at `startTime` (HH:MM, UTC) and lasts `duration` (4h to 24h)."""

    startTime: Annotated[str, StringConstraints(max_length=5, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = Field(
        description="Time of day the window opens, HH:MM in UTC"
    )
    duration: Annotated[
        str, StringConstraints(min_length=2, max_length=8, pattern=r"^([0-9]{1,2}h)?([0-9]{1,4}m)?$")
    ] = Field(description="How long it stays open: 4h, 90m... at least 4h (GKE's minimum), at most 24h")

    @field_validator("duration")
    @classmethod
    def _four_to_twenty_four_hours(cls, value: str) -> str:
        match = _DURATION.match(value)
        minutes = 60 * int(match.group(1) or 0) + int(match.group(2) or 0) if match else 0
        if not 4 * 60 <= minutes <= 24 * 60:
            raise ValueError(f"duration {value!r} must be between 4h and 24h")
        return value


class GkeUpdate(Strict):
    authorizedNetworks: Annotated[list[Cidr], Field(max_length=50)] | None = None
    imageType: ShortText | None = None
    maintenanceWindow: MaintenanceWindow | None = None
    releaseChannel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] | None = None


class AksUpdate(Strict):
    authorizedIPRanges: Annotated[list[Cidr], Field(max_length=200)] | None = None
    autoUpgradeChannel: Literal["none", "patch", "stable", "rapid", "node-image"] | None = None
    nodeOsUpgradeChannel: Literal["None", "Unmanaged", "SecurityPatch", "NodeImage"] | None = None


class EksUpdate(Strict):
    amiFamily: ShortText | None = None


class SelfHostedUpdate(Strict):
    controlPlane: NodeGroup | None = None


class LocalUpdate(Strict):
    """Failure injection and pacing of the local simulator, for updates."""

    phaseSeconds: Annotated[float, Field(ge=0, le=3600)] | None = None
    failAt: PhaseName | None = None
    failTimes: Annotated[int, Field(ge=0, le=100)] | None = None


class ClusterUpdateSpec(Strict):
    kubernetesVersion: KubeVersion | None = None
    nodeGroups: Annotated[list[NodeGroup], Field(max_length=50)] | None = Field(
        default=None, description="The wanted data-plane node groups: new names are added, missing ones removed"
    )
    tags: dict[Label, Annotated[str, StringConstraints(max_length=256)]] | None = None
    eks: EksUpdate | None = None
    gke: GkeUpdate | None = None
    aks: AksUpdate | None = None
    selfHosted: SelfHostedUpdate | None = None
    local: LocalUpdate | None = None
    updateConfig: UpdateConfig = UpdateConfig()

    @field_validator("nodeGroups")
    @classmethod
    def _unique_names(cls, groups: list[NodeGroup] | None) -> list[NodeGroup] | None:
        return None if groups is None else DataPlane._unique_names(groups)


class K8sClusterUpdate(Strict):
    apiVersion: ApiVersion
    kind: Literal["K8sClusterUpdate"]
    spec: ClusterUpdateSpec


def update_request(spec: ClusterUpdateSpec) -> UpdateRequest:
    """The validated update document as the planner's typed request.

    Fields the document accepts but no provider can apply yet are passed on by path, so the
    planner refuses them by name instead of the update silently ignoring them.
    """
    unsupported: list[str] = []
    if spec.eks is not None and spec.eks.amiFamily is not None:
        unsupported.append("spec.eks.amiFamily (existing node groups keep their AMI; add a group instead)")
    if spec.gke is not None and spec.gke.imageType is not None:
        unsupported.append("spec.gke.imageType")
    if spec.selfHosted is not None:
        unsupported.append("spec.selfHosted")
    gke = (
        GkeChange(
            release_channel=spec.gke.releaseChannel,
            maintenance_window=ChangeWindow(spec.gke.maintenanceWindow.startTime, spec.gke.maintenanceWindow.duration)
            if spec.gke.maintenanceWindow
            else None,
            authorized_networks=tuple(spec.gke.authorizedNetworks) if spec.gke.authorizedNetworks is not None else None,
        )
        if spec.gke is not None and spec.gke.model_dump(exclude_none=True, exclude={"imageType"})
        else None
    )
    aks = (
        AksChange(
            auto_upgrade_channel=spec.aks.autoUpgradeChannel,
            node_os_upgrade_channel=spec.aks.nodeOsUpgradeChannel,
            authorized_ip_ranges=None if spec.aks.authorizedIPRanges is None else tuple(spec.aks.authorizedIPRanges),
        )
        if spec.aks is not None and spec.aks.model_dump(exclude_none=True)
        else None
    )
    config = spec.updateConfig
    return UpdateRequest(
        kubernetes_version=spec.kubernetesVersion,
        node_groups=tuple(NodeGroupSpec.from_document(g.model_dump(mode="json")) for g in spec.nodeGroups)
        if spec.nodeGroups is not None
        else None,
        tags=dict(spec.tags) if spec.tags is not None else None,
        gke=gke,
        aks=aks,
        simulation=simulation_from(spec.local.model_dump(exclude_none=True)) if spec.local is not None else None,
        unsupported=tuple(unsupported),
        allow_downgrade=config.allowDowngrade,
        max_surge=config.maxSurge or "1",
        max_unavailable=config.maxUnavailable or "0",
    )


class PreflightCheck(BaseModel):
    name: str
    category: Literal["AUTOMATED", "MANUAL"]
    description: str
    status: Literal["PASS", "WARN", "FAIL"]
    remediation: str


class NodePoolChange(BaseModel):
    name: str
    changeType: ChangeKind
    strategy: Literal["ROLLING", "IN_PLACE", "CREATE", "DRAIN_AND_DELETE"]
    minNodes: int | None
    maxNodes: int | None
    machineTypes: list[str]
    instanceType: Literal["ondemand", "spot"] | None
    kubernetesVersion: str | None


class PlanPhase(BaseModel):
    name: Phase
    description: str
    strategy: Literal["ROLLING", "SEQUENTIAL"]
    estimatedDuration: str = Field(description="Such as 5m or 1h05m")
    details: list[str]
    nodePools: list[NodePoolChange]


class PlanRollback(BaseModel):
    details: list[str] = Field(description="What a rollback would do to the node groups")
    restoresTags: bool
    controlPlane: str


class RollingStrategy(BaseModel):
    maxSurge: str
    maxUnavailable: str
    description: str


class UpgradePlan(BaseModel):
    """The reference's `upgradePlan`: the phases the update runs, and how it would roll back."""

    clusterName: str
    provider: ViewProvider
    provisionerType: ViewProvisionerType
    region: str
    currentVersion: str | None
    targetVersion: str | None
    phases: list[PlanPhase]
    rollback: PlanRollback
    preflightChecks: list[PreflightCheck]
    rollingStrategy: RollingStrategy
    planHash: str


UpgradeType = Literal["NONE", "PATCH", "MINOR", "MAJOR", "DOWNGRADE"]


class VersionAnalysis(BaseModel):
    currentVersion: str | None
    targetVersion: str | None
    upgradeType: UpgradeType
    skippedVersions: list[str]
    breakingChanges: list[str]
    deprecatedAPIs: list[str]


class ReportIssue(BaseModel):
    type: Literal["UPGRADE", "PREFLIGHT"]
    severity: Literal["LOW", "MEDIUM", "HIGH"]
    description: str
    affected: list[str]
    resolution: str


class ResourceAnalysis(BaseModel):
    currentNodes: int
    requiredForSurge: int
    hasCapacity: bool


class UpgradeReport(BaseModel):
    """The reference's `upgradeReport`: readiness, risk and what stands in the way."""

    canProceed: bool
    readinessScore: int = Field(ge=0, le=100)
    riskLevel: Literal["LOW", "MEDIUM", "HIGH"]
    estimatedTime: str
    reportSummary: str
    versionAnalysis: VersionAnalysis
    warnings: list[ReportIssue]
    criticalIssues: list[ReportIssue]
    recommendations: list[str]
    resourceAnalysis: ResourceAnalysis


class UpdatePreview(BaseModel):
    """The answer to a dry run or report request: what the update would do, and whether it may."""

    clusterId: str
    status: ClusterState
    message: str
    validationPassed: bool
    errors: list[str]
    warnings: list[str]
    preflightChecks: list[PreflightCheck]
    upgradePlan: UpgradePlan
    upgradeReport: UpgradeReport | None = None
    planHash: str
