"""What AWS offers, read through boto3 with the platform's own credentials: the EKS catalog.

- Versions: EKS `DescribeClusterVersions` (standard and extended support; `UNSUPPORTED` ones are
  not offered), its `defaultVersion` the default. They are the same in every region.
- Regions: the configured ones (`CLUSTERFLOW_CATALOG_REGIONS`, else the snapshot's) that EC2
  `DescribeRegions` lists for the account; zones from `DescribeAvailabilityZones` (availability
  zones only, not Local or Wavelength zones).
- Machine types: the x86_64 and arm64 instance types of the configured families
  (`CLUSTERFLOW_CATALOG_AWS_INSTANCE_FAMILIES`: EC2 lists hundreds of types, most of them
  unsuited to Kubernetes nodes) that `DescribeInstanceTypeOfferings` offers in the region, in
  the zones it names, with vCPU, memory and architectures from `DescribeInstanceTypes` (by name:
  one call per hundred types, not a scan of every type). AWS publishes list prices through
  another API (Pricing), so prices come from the snapshot where it has the type and are empty
  otherwise; categories follow the family letter as AWS names them.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.aws.clients import AwsClients, aws_call
from clusterflow.catalog.model import KubernetesVersions, MachineType, ProviderCatalog, Region, RegionCatalog
from clusterflow.catalog.model import version_key as _version_key
from clusterflow.catalog.upstream import UPGRADE_WARNINGS

_OFFERED = ("STANDARD_SUPPORT", "EXTENDED_SUPPORT")
_ARCHITECTURES = ("x86_64", "arm64")


async def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        paging: dict[str, Any] = {"NextToken": token} if token else {}
        page = await aws_call(client, operation, **kwargs, **paging)
        items.extend(page.get(key) or [])
        token = page.get("NextToken")
        if not token:
            return items


async def eks_versions(clients: AwsClients) -> KubernetesVersions:
    eks = clients.platform_client("eks")
    versions: list[str] = []
    default: str | None = None
    token: str | None = None
    while True:
        paging: dict[str, Any] = {"nextToken": token} if token else {}
        page = await aws_call(eks, "describe_cluster_versions", **paging)
        for item in page.get("clusterVersions") or []:
            if (item.get("versionStatus") or item.get("status")) in _OFFERED:
                versions.append(str(item["clusterVersion"]))
                if item.get("defaultVersion"):
                    default = str(item["clusterVersion"])
        token = page.get("nextToken")
        if not token:
            break
    if not versions:
        raise ValueError("EKS DescribeClusterVersions offered no supported version")
    offered = tuple(sorted(set(versions), key=_version_key))
    return KubernetesVersions(
        default_version=default or offered[-1], supported_versions=offered, upgrade_warnings=UPGRADE_WARNINGS
    )


def _category(name: str) -> str:
    family = name.split(".")[0]
    if family.startswith(("inf", "trn", "dl")):
        return "AcceleratorOptimized"
    if family[0] in "gpf":
        return "GPU"
    if family[0] == "c":
        return "ComputeOptimized"
    if family[0] in "rxuz":
        return "MemoryOptimized"
    return "GeneralPurpose"


async def _instance_types(ec2: Any, names: list[str], snapshot: ProviderCatalog) -> dict[str, MachineType]:
    described: list[dict[str, Any]] = []
    for start in range(0, len(names), 100):
        page = await aws_call(ec2, "describe_instance_types", InstanceTypes=names[start : start + 100])
        described.extend(page.get("InstanceTypes") or [])
    known = {m.name: m for m in snapshot.machine_types}
    types: dict[str, MachineType] = {}
    for item in described:
        name = str(item["InstanceType"])
        architectures = tuple(
            a for a in (item.get("ProcessorInfo") or {}).get("SupportedArchitectures") or () if a in _ARCHITECTURES
        )
        if not architectures:
            continue
        price = known.get(name)
        types[name] = MachineType(
            name=name,
            vcpu=int((item.get("VCpuInfo") or {}).get("DefaultVCpus") or 0),
            memory_mb=int((item.get("MemoryInfo") or {}).get("SizeInMiB") or 0),
            category=price.category if price else _category(name),
            architectures=architectures,
            on_demand_price_per_hour=price.on_demand_price_per_hour if price else "",
            spot_price_per_hour=price.spot_price_per_hour if price else "",
        )
    return types


async def read_aws_catalog(
    clients: AwsClients, snapshot: ProviderCatalog, region_ids: list[str], families: list[str]
) -> list[RegionCatalog]:
    """Each region's catalog as AWS answers it now (see the module doc)."""
    versions = await eks_versions(clients)
    platform_ec2 = clients.platform_client("ec2")
    listed = {r["RegionName"] for r in (await aws_call(platform_ec2, "describe_regions")).get("Regions") or []}
    wanted = set(families)
    found: list[tuple[str, tuple[str, ...], dict[str, list[str]]]] = []
    for region_id in (r for r in region_ids if r in listed):
        ec2 = clients.platform_client("ec2", region_id)
        zones = tuple(
            sorted(
                str(z["ZoneName"])
                for z in (await aws_call(ec2, "describe_availability_zones")).get("AvailabilityZones") or []
                if z.get("ZoneType", "availability-zone") == "availability-zone" and z.get("State") == "available"
            )
        )
        offered: dict[str, list[str]] = {}
        for offer in await _pages(
            ec2, "describe_instance_type_offerings", "InstanceTypeOfferings", LocationType="availability-zone"
        ):
            name = str(offer.get("InstanceType"))
            if offer.get("Location") in zones and name.split(".")[0] in wanted:
                offered.setdefault(name, []).append(str(offer["Location"]))
        found.append((region_id, zones, offered))
    types = await _instance_types(platform_ec2, sorted({n for *_, offered in found for n in offered}), snapshot)
    regions: list[RegionCatalog] = []
    for region_id, zones, offered in found:
        machines = tuple(
            MachineType(
                m.name,
                m.vcpu,
                m.memory_mb,
                m.category,
                m.architectures,
                tuple(sorted(offered[m.name])),
                m.on_demand_price_per_hour,
                m.spot_price_per_hour,
            )
            for m in types.values()
            if m.name in offered
        )
        regions.append(RegionCatalog(Region(region_id, zones), machines, {"eks": versions}))
    return regions
