"""What a deploy spec must satisfy before anything is created: one pure function for everyone.

`check_deploy_spec` is called by the API (deploy and its dry run, before anything is written or
enqueued) and is meant to be called by each provider's deploy VALIDATE phase, so a dry run can
never answer `valid: true` for a spec that VALIDATE refuses minutes later, and no VALIDATE can
refuse a spec the API accepted. It is shaped for that:

- Pure: the spec as JSON in (camelCase, as `ClusterSpec.model_dump(mode="json",
  exclude_none=True)` gives it), a list of `SpecProblem` out. No I/O and no cloud SDK (stdlib and
  `clusterflow.catalog` only), so the API, activities and workflows may all import it. What
  needs a read (a connected account, a project, live quotas, whether an instance type exists
  in *this* account) is not here: the API checks what the database knows, VALIDATE what only
  the cloud knows.
- Every problem, not the first: a client fixes a document in one round trip. Each problem names
  the field at fault as a dotted path (`spec.clusterSpec.dataPlane.nodeGroups[1].machineTypes[0]`)
  so the API can answer a 422 per field.
- Total: any JSON (missing keys, wrong types) gives problems, never an exception, because a
  workflow may hand it a spec recorded by an older release.
- The catalog is the contract: versions, regions, zones and machine types come from the
  `Catalog` value the caller passes, the same data `GET /v1/providers/...` serves. Callers load
  it from the stored catalog (`records.catalog.current_catalog`: the live refresh over the
  shipped snapshot), so this stays pure; `SNAPSHOT` is the default for callers with no database.
- Fields no provider honours are refused by name ("... is not supported yet") rather than
  silently ignored; when a provider starts honouring one, delete its entry in `_UNSUPPORTED`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from clusterflow.catalog import CATALOGS, aws, azure, local
from clusterflow.catalog.model import Catalog, KubernetesVersions, ProviderCatalog, Region, minor_of

__all__ = [
    "PROVISIONER_FOR",
    "SpecProblem",
    "check_deploy_spec",
    "deploy_kubernetes_version",
]


@dataclass(frozen=True)
class SpecProblem:
    """One reason a deploy spec is refused: the field at fault (dotted path from `spec`) and why."""

    field: str
    message: str


# The provisioner each provider deploys with (self-hosted provisioning is not built yet).
PROVISIONER_FOR: dict[str, str] = {"local": "local", "aws": "eks", "gcp": "gke", "azure": "aks"}

_SELF_HOSTED = (
    "self-hosted provisioning is not available yet: use the managed provisioner of the provider "
    "(provisioner.type 'eks' on aws, 'gke' on gcp, 'aks' on azure, 'local' on local)"
)

# Provisioner block fields that are accepted by the document schema but that no provider
# honours today: block -> field -> why. (EKS `amiFamily`, subnet `type` and `privateCluster` are
# honoured by the AWS provider and are not listed.)
_CREDENTIALS = (
    "is not supported yet: clusterflow acts through the organization's connected cloud account "
    "(POST /v1/cloud-accounts/{provider}); remove the credentials block"
)
_UNSUPPORTED: dict[str, dict[str, str]] = {
    "eks": {"credentials": _CREDENTIALS},
    "gke": {
        "credentials": _CREDENTIALS,
        "networkCIDR": "is not supported yet: GKE builds VPC-native networking in provisioner.gke.networkId "
        "(and subnet); remove networkCIDR",
    },
    "aks": {"credentials": _CREDENTIALS},
    "local": {},
}


# --- helpers ----------------------------------------------------------------------------------


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _minor(version: str) -> str | None:
    try:
        return minor_of(version)
    except (ValueError, TypeError):
        return None


def _block(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return _mapping(_mapping(spec.get("provisioner")).get(name))


def _control_plane(spec: dict[str, Any]) -> dict[str, Any] | None:
    group = _mapping(_mapping(_mapping(spec.get("clusterSpec")).get("controlPlane")).get("nodeGroup"))
    return group or None


def _data_plane(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    groups = _items(_mapping(_mapping(spec.get("clusterSpec")).get("dataPlane")).get("nodeGroups"))
    for index, group in enumerate(groups):
        yield f"spec.clusterSpec.dataPlane.nodeGroups[{index}]", _mapping(group)


def _all_groups(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    control = _control_plane(spec)
    if control is not None:
        yield "spec.clusterSpec.controlPlane.nodeGroup", control
    yield from _data_plane(spec)


def _group_name(group: dict[str, Any]) -> str:
    return str(group.get("name") or "?")


def _machine_types(path: str, group: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for index, machine in enumerate(_items(group.get("machineTypes"))):
        yield f"{path}.machineTypes[{index}]", machine


def _zones(path: str, group: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for index, zone in enumerate(_items(group.get("availabilityZones"))):
        yield f"{path}.availabilityZones[{index}]", zone


def _region(catalog: ProviderCatalog, spec: dict[str, Any], what: str, problems: list[SpecProblem]) -> Region | None:
    region_id = spec.get("region")
    region = catalog.region(region_id) if isinstance(region_id, str) else None
    if region is None:
        offered = ", ".join(r.id for r in catalog.regions)
        problems.append(SpecProblem("spec.region", f"region {region_id} is not {what} region (offered: {offered})"))
    return region


def _check_zones(
    region: Region | None,
    groups: list[tuple[str, dict[str, Any]]],
    problems: list[SpecProblem],
    in_region: Callable[[str, Region], bool] | None = None,
) -> None:
    if region is None:
        return  # already refused; every zone would be "not in region" too
    for path, group in groups:
        for field, zone in _zones(path, group):
            ok = isinstance(zone, str) and (in_region(zone, region) if in_region else zone in region.zones)
            if not ok:
                problems.append(
                    SpecProblem(
                        field,
                        f"zone {zone} of node group {_group_name(group)!r} is not in region {region.id} "
                        f"(zones: {', '.join(region.zones)})",
                    )
                )


def _check_machine_types(
    catalog: ProviderCatalog,
    region: Region | None,
    groups: list[tuple[str, dict[str, Any]]],
    problems: list[SpecProblem],
    *,
    noun: str = "machine type",
    generic: dict[str, str] | None = None,
) -> None:
    """Each machine type offered in the region (or, the region being unknown, in the catalog)."""
    offered = {m.name for m in (catalog.machine_types_in(region.id) if region else catalog.machine_types)}
    where = f"in {region.id}" if region else f"by {catalog.provider}"
    listing = f"GET /v1/providers/{catalog.provider}/regions/{region.id if region else '{region}'}/machine-types"
    for path, group in groups:
        for field, machine in _machine_types(path, group):
            name = generic.get(machine, machine) if generic and isinstance(machine, str) else machine
            if name not in offered:
                sizes = f"a generic size ({', '.join(generic)}) or " if generic else ""
                problems.append(
                    SpecProblem(
                        field,
                        f"{noun} {machine!r} of node group {_group_name(group)!r} is not offered {where} "
                        f"(use {sizes}one of {listing})",
                    )
                )


def _one_machine_type(groups: list[tuple[str, dict[str, Any]]], who: str, problems: list[SpecProblem]) -> None:
    """GKE node pools and AKS agent pools take one machine type: the rest would be ignored."""
    for path, group in groups:
        for field, _ in list(_machine_types(path, group))[1:]:
            problems.append(
                SpecProblem(
                    field,
                    f"a second machine type for node group {_group_name(group)!r} is not supported yet: "
                    f"{who} pools take one machine type; give one per node group",
                )
            )


def _unsupported(block_name: str, block: dict[str, Any], problems: list[SpecProblem]) -> None:
    for field, why in _UNSUPPORTED.get(block_name, {}).items():
        if block.get(field) is not None:
            problems.append(SpecProblem(f"spec.provisioner.{block_name}.{field}", f"{field} {why}"))


# --- versions -----------------------------------------------------------------------------------


def _provider_catalog(catalog: Catalog | None, provider: str) -> ProviderCatalog:
    return (catalog.get(provider) if catalog else None) or CATALOGS[provider]


def _versions(catalog: ProviderCatalog, provisioner: str, spec: dict[str, Any]) -> KubernetesVersions:
    region = spec.get("region")
    found = catalog.versions(provisioner, region if isinstance(region, str) else None)
    return found or CATALOGS[catalog.provider].kubernetes[provisioner]


def deploy_kubernetes_version(spec: dict[str, Any]) -> str | None:
    """The Kubernetes version a deploy of `spec` asks for, defaults applied as its provider
    applies them (GKE: the release channel's default); None for an unknown provider.

    The defaults are the shipped snapshot's, not the live catalog's: they are what the providers'
    CONTROL_PLANE phases send (`requested_version`, `DEFAULT_KUBERNETES_VERSION`), so the version
    judged here is the version created. When a cloud retires a snapshot default, a deploy that
    names no version is refused here by field, never by the cloud half-way through."""
    provider = spec.get("provider")
    if provider == "local":
        return _text(_block(spec, "local").get("kubernetesVersion")) or local.DEFAULT_KUBERNETES_VERSION
    if provider == "aws":
        return _text(_block(spec, "eks").get("kubernetesVersion")) or aws.DEFAULT_KUBERNETES_VERSION
    if provider == "gcp":
        gke = _block(spec, "gke")
        versions = CATALOGS["gcp"].kubernetes["gke"]
        channel = gke.get("releaseChannel")
        if _text(gke.get("kubernetesVersion")):
            return str(gke["kubernetesVersion"])
        if isinstance(channel, str) and channel in versions.channels:
            return versions.channels[channel].default_version
        return versions.default_version
    if provider == "azure":
        aks = _block(spec, "aks")
        return _text(aks.get("kubernetesVersion")) or CATALOGS["azure"].kubernetes["aks"].default_version
    return None


# --- per provider -------------------------------------------------------------------------------


def _check_local(spec: dict[str, Any], problems: list[SpecProblem], _: Catalog) -> None:
    catalog = local.CATALOG
    region = _region(catalog, spec, "a local", problems)
    version = deploy_kubernetes_version(spec)
    if version not in local.KUBERNETES_VERSIONS:
        problems.append(
            SpecProblem(
                "spec.provisioner.local.kubernetesVersion",
                f"kubernetesVersion {version} is not offered by the local provider "
                f"(supported: {', '.join(local.KUBERNETES_VERSIONS)})",
            )
        )
    groups = list(_all_groups(spec))
    for path, group in groups:
        for field, machine in _machine_types(path, group):
            if machine not in local.MACHINE_TYPES:
                problems.append(
                    SpecProblem(
                        field,
                        f"machine type {machine!r} of node group {_group_name(group)!r} is unknown to the "
                        f"local provider (offered: {', '.join(local.MACHINE_TYPES)})",
                    )
                )
    _check_zones(region, groups, problems)


def _check_eks(spec: dict[str, Any], problems: list[SpecProblem], everything: Catalog) -> None:
    catalog = _provider_catalog(everything, "aws")
    eks = _block(spec, "eks")
    region = _region(catalog, spec, "an AWS", problems)
    version = deploy_kubernetes_version(spec)
    offered = _versions(catalog, "eks", spec).supported_versions
    if version not in offered:
        problems.append(
            SpecProblem(
                "spec.provisioner.eks.kubernetesVersion",
                f"kubernetesVersion {version} is not offered on EKS by this control plane "
                f"(supported: {', '.join(offered)}). Remedy: pick a supported version.",
            )
        )
    ami = eks.get("amiFamily")
    if ami is not None and ami not in aws.AMI_TYPES:
        problems.append(
            SpecProblem("spec.provisioner.eks.amiFamily", f"amiFamily {ami!r} is not one of {', '.join(aws.AMI_TYPES)}")
        )
    # EKS runs the control plane itself: only data-plane groups become node groups.
    groups = list(_data_plane(spec))
    _check_machine_types(catalog, region, groups, problems, noun="instance type", generic=aws.MACHINE_TYPES)
    _check_zones(region, groups, problems)
    _unsupported("eks", eks, problems)
    _check_eks_network(eks, problems)


def _check_eks_network(eks: dict[str, Any], problems: list[SpecProblem]) -> None:
    subnets = _mapping(eks.get("subnets"))
    ids = []
    for name, entries in subnets.items():
        for index, entry in enumerate(_items(entries)):
            entry = _mapping(entry)
            path = f"spec.provisioner.eks.subnets.{name}[{index}]"
            if entry.get("cidr") is not None:
                problems.append(
                    SpecProblem(
                        f"{path}.cidr",
                        "cidr is not supported yet: subnets are either given by id (with vpcId) or created by "
                        "clusterflow from vpcCIDR; remove cidr",
                    )
                )
            if _text(entry.get("id")):
                ids.append(entry["id"])
    if _text(eks.get("vpcId")):
        if eks.get("vpcCIDR") is not None:
            problems.append(
                SpecProblem(
                    "spec.provisioner.eks.vpcCIDR",
                    "vpcCIDR sizes the VPC clusterflow creates and does not apply with vpcId; remove one of them",
                )
            )
        if len(ids) < 2:
            problems.append(
                SpecProblem(
                    "spec.provisioner.eks.subnets",
                    "provisioner.eks.vpcId needs at least two subnet IDs in provisioner.eks.subnets (two zones)",
                )
            )
    elif ids:
        problems.append(
            SpecProblem(
                "spec.provisioner.eks.subnets",
                "subnet IDs are used only with provisioner.eks.vpcId (bring your own network); give vpcId or "
                "remove the subnet IDs",
            )
        )


def _check_gke(spec: dict[str, Any], problems: list[SpecProblem], everything: Catalog) -> None:
    catalog = _provider_catalog(everything, "gcp")
    versions = _versions(catalog, "gke", spec)
    gke = _block(spec, "gke")
    region = _region(catalog, spec, "a GKE", problems)
    channel = gke.get("releaseChannel")
    autopilot = bool(gke.get("autopilot"))
    if channel is not None and channel not in versions.channels:
        problems.append(
            SpecProblem(
                "spec.provisioner.gke.releaseChannel",
                f"releaseChannel {channel} is unknown (offered: {', '.join(versions.channels)})",
            )
        )
    else:
        version = deploy_kubernetes_version(spec) or ""
        offered = versions.versions(channel, autopilot)
        if _minor(version) not in offered:
            where = f"the {channel} channel" if channel else "GKE"
            where += " for Autopilot" if autopilot else ""
            field = "kubernetesVersion" if gke.get("kubernetesVersion") or not channel else "releaseChannel"
            problems.append(
                SpecProblem(
                    f"spec.provisioner.gke.{field}",
                    f"kubernetesVersion {version} is not offered by {where} (offered: {', '.join(offered)})",
                )
            )
    if gke.get("masterIPv4CidrBlock") is not None and not gke.get("privateCluster"):
        problems.append(
            SpecProblem(
                "spec.provisioner.gke.masterIPv4CidrBlock",
                "masterIPv4CidrBlock applies only to private clusters: set privateCluster or remove it",
            )
        )
    _unsupported("gke", gke, problems)
    if autopilot:
        return  # Autopilot provisions nodes itself: node groups are not created (as VALIDATE skips them)
    groups = list(_data_plane(spec))
    _check_zones(region, groups, problems)
    _check_machine_types(catalog, region, groups, problems)
    _one_machine_type(groups, "GKE node", problems)


def _aks_zone_in(zone: str, region: Region) -> bool:
    """`2` or `eastus-2` in eastus: a zone naming another region (`westus2-2`) is refused."""
    if not zone.isdigit() and not zone.startswith(f"{region.id}-"):
        return False
    return f"{region.id}-{azure.aks_zone(zone)}" in region.zones


def _check_aks(spec: dict[str, Any], problems: list[SpecProblem], everything: Catalog) -> None:
    catalog = _provider_catalog(everything, "azure")
    versions = _versions(catalog, "aks", spec)
    aks = _block(spec, "aks")
    region = _region(catalog, spec, "an AKS", problems)
    version = deploy_kubernetes_version(spec) or ""
    if _minor(version) not in versions.supported_versions:
        problems.append(
            SpecProblem(
                "spec.provisioner.aks.kubernetesVersion",
                f"kubernetesVersion {version} is not offered by AKS "
                f"(offered: {', '.join(versions.supported_versions)})",
            )
        )
    # The system pool is controlPlane.nodeGroup when given, else the first data-plane group;
    # every group becomes an agent pool.
    groups = list(_all_groups(spec))
    seen: dict[str, str] = {}
    for path, group in groups:
        name = group.get("name")
        if not isinstance(name, str) or not azure.POOL_NAME.match(name):
            problems.append(
                SpecProblem(
                    f"{path}.name",
                    f"node group name {name!r} is not a valid AKS agent pool name "
                    "(lowercase letters and digits, starting with a letter, at most 12 characters)",
                )
            )
        elif name in seen:
            problems.append(
                SpecProblem(
                    f"{path}.name",
                    f"node group name {name!r} is also used by {seen[name]}: AKS pool names are unique per cluster",
                )
            )
        else:
            seen[name] = path
    _check_zones(region, groups, problems, _aks_zone_in)
    _check_machine_types(catalog, region, groups, problems, noun="VM size")
    _one_machine_type(groups, "AKS agent", problems)
    if aks.get("networkPluginMode") is not None and aks.get("networkPlugin") is None:
        problems.append(
            SpecProblem(
                "spec.provisioner.aks.networkPluginMode",
                "networkPluginMode applies only with networkPlugin: set networkPlugin (for example 'azure') or "
                "remove networkPluginMode",
            )
        )
    _unsupported("aks", aks, problems)


_CHECKS: dict[str, Callable[[dict[str, Any], list[SpecProblem], Catalog], None]] = {
    "local": _check_local,
    "aws": _check_eks,
    "gcp": _check_gke,
    "azure": _check_aks,
}


def check_deploy_spec(spec: dict[str, Any], catalog: Catalog | None = None) -> list[SpecProblem]:
    """Every reason the deploy of `spec` (the K8sCluster `spec`, as JSON) would be refused by its
    provider, judged from the spec and `catalog` alone (the shipped snapshot when None); empty
    when it may be deployed."""
    spec = _mapping(spec)
    provider = spec.get("provider")
    kind = _mapping(spec.get("provisioner")).get("type")
    if kind == "selfHosted":
        return [SpecProblem("spec.provisioner.type", _SELF_HOSTED)]
    check = _CHECKS.get(provider) if isinstance(provider, str) else None
    if check is None:
        return [SpecProblem("spec.provider", f"provider {provider!r} is unknown (known: {', '.join(_CHECKS)})")]
    expected = PROVISIONER_FOR[str(provider)]
    if kind != expected:
        return [
            SpecProblem(
                "spec.provisioner.type",
                f"provisioner.type {kind!r} does not deploy on provider {provider!r} (use {expected!r})",
            )
        ]
    problems: list[SpecProblem] = []
    check(spec, problems, catalog or Catalog({}))
    return problems
