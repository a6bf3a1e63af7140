"""What AKS offers, read through azure-mgmt-containerservice: versions and VM sizes per region.

For each configured region (`CLUSTERFLOW_CATALOG_REGIONS`, else the snapshot's), in the settings'
subscription
(`CLUSTERFLOW_AZURE_DEFAULT_SUBSCRIPTION_ID`) with the control plane's own credential:

- versions: `managedClusters.list_kubernetes_versions(location)`; preview versions are not
  offered, the one marked `isDefault` is the default;
- VM sizes: the `Microsoft.Compute/skus` listing for the location (virtual machines without a
  `NotAvailableForSubscription` restriction), sent through the same client's pipeline
  (`send_request`: credential, endpoint and CA as every other AKS call) since no Compute SDK is
  installed. Its zones become the region's zones (`<region>-<n>`, as the catalog names them);
  list prices come from the snapshot where it has the size (Azure publishes them elsewhere).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.core.rest import HttpRequest

from clusterflow.activities.providers.azure.clients import make_client, make_credential
from clusterflow.activities.providers.azure.errors import classify_azure_error
from clusterflow.catalog.model import (
    KubernetesVersions,
    MachineType,
    ProviderCatalog,
    Region,
    RegionCatalog,
    version_key,
)
from clusterflow.catalog.upstream import UPGRADE_WARNINGS
from clusterflow.settings import Settings

_SKUS_API_VERSION = "2021-07-01"
_ARCHITECTURES = {"x64": "x86_64", "Arm64": "arm64"}


def _category(name: str) -> str:
    family = name.removeprefix("Standard_").lstrip("0123456789")[:2].upper()
    if family.startswith("ND"):
        return "AcceleratorOptimized"
    if family.startswith("N"):
        return "GPU"
    if family.startswith("F"):
        return "ComputeOptimized"
    if family.startswith(("E", "M", "G")):
        return "MemoryOptimized"
    return "GeneralPurpose"


def aks_versions(listed: Any) -> KubernetesVersions:
    offered = [v for v in (listed.values_property or []) if v.version and not v.is_preview]
    supported = tuple(sorted({str(v.version) for v in offered}, key=version_key))
    if not supported:
        raise ValueError("AKS offered no Kubernetes version that is not in preview")
    default = next((str(v.version) for v in offered if v.is_default), supported[-1])
    return KubernetesVersions(default_version=default, supported_versions=supported, upgrade_warnings=UPGRADE_WARNINGS)


def vm_sizes(
    region: str, skus: list[dict[str, Any]], snapshot: ProviderCatalog
) -> tuple[Region, tuple[MachineType, ...]]:
    known = {m.name: m for m in snapshot.machine_types}
    zones: set[str] = set()
    machines: list[MachineType] = []
    for sku in skus:
        if sku.get("resourceType") != "virtualMachines":
            continue
        if any(r.get("reasonCode") == "NotAvailableForSubscription" for r in sku.get("restrictions") or ()):
            continue
        capabilities = {str(c.get("name")): str(c.get("value")) for c in sku.get("capabilities") or ()}
        architecture = _ARCHITECTURES.get(capabilities.get("CpuArchitectureType", "x64"))
        if architecture is None or "vCPUs" not in capabilities or "MemoryGB" not in capabilities:
            continue
        sku_zones = [
            f"{region}-{z}"
            for info in sku.get("locationInfo") or ()
            if str(info.get("location", "")).lower() == region.lower()
            for z in info.get("zones") or ()
        ]
        zones.update(sku_zones)
        name = str(sku["name"])
        price = known.get(name)
        machines.append(
            MachineType(
                name=name,
                vcpu=int(float(capabilities["vCPUs"])),
                memory_mb=int(float(capabilities["MemoryGB"]) * 1024),
                category=price.category if price else _category(name),
                architectures=(architecture,),
                zones=tuple(sorted(sku_zones)),
                on_demand_price_per_hour=price.on_demand_price_per_hour if price else "",
                spot_price_per_hour=price.spot_price_per_hour if price else "",
            )
        )
    # A size offered without zones (a region without availability zones) is offered region-wide.
    return Region(region, tuple(sorted(zones))), tuple(machines)


async def read_aks_catalog(settings: Settings, snapshot: ProviderCatalog, region_ids: list[str]) -> list[RegionCatalog]:
    """Each region with AKS's versions and VM sizes there now (see the module doc)."""
    subscription = settings.azure_default_subscription_id
    if not subscription:
        raise ValueError(
            "no Azure subscription to read AKS's catalog in: set CLUSTERFLOW_AZURE_DEFAULT_SUBSCRIPTION_ID"
        )
    client = make_client(settings, make_credential(settings), subscription)
    regions: list[RegionCatalog] = []
    for region in (snapshot.region(r) or Region(r, ()) for r in region_ids):
        what = f"read AKS's catalog in {region.id}"
        try:
            listed = await asyncio.to_thread(
                functools.partial(client.managed_clusters.list_kubernetes_versions, region.id)
            )
            request = HttpRequest(
                "GET",
                f"/subscriptions/{subscription}/providers/Microsoft.Compute/skus",
                params={"api-version": _SKUS_API_VERSION, "$filter": f"location eq '{region.id}'"},
            )
            response = await asyncio.to_thread(client.send_request, request)
            response.raise_for_status()
            skus: list[dict[str, Any]] = list(response.json().get("value") or [])
        except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as err:
            raise classify_azure_error(err, what) from err
        live_region, machines = vm_sizes(region.id, skus, snapshot)
        if not machines:
            raise ValueError(f"Azure listed no VM size available in {region.id}")
        regions.append(
            RegionCatalog(live_region if live_region.zones else region, machines, {"aks": aks_versions(listed)})
        )
    return regions
