"""The stored form of a refreshed region, and how stored regions become a provider's catalog.

A refresh stores one JSON document per provider and region (`RegionCatalog`), so a region that
fails to refresh keeps its last good document while the others move on. Reading puts them back
together over the shipped snapshot: the regions refreshed replace the snapshot's regions, machine
types are offered in exactly the zones a cloud said, a provisioner the refresh did not read
(self-hosted) keeps the snapshot's versions, and the provider-wide versions are those of the
provider's default region (the one the catalog routes answer for without `region=`).

Pure: the JSON in and out is plain data for `records/catalog.py`, which holds the SQL.
"""

from __future__ import annotations

from typing import Any

from clusterflow.catalog.model import (
    LIVE_SOURCE,
    ChannelVersions,
    KubernetesVersions,
    MachineType,
    ProviderCatalog,
    Region,
    RegionCatalog,
)
from clusterflow.catalog.upstream import UPGRADE_WARNINGS


def _versions_json(versions: KubernetesVersions) -> dict[str, Any]:
    return {
        "defaultVersion": versions.default_version,
        "supportedVersions": list(versions.supported_versions),
        "channels": {
            name: {"defaultVersion": c.default_version, "validVersions": list(c.valid_versions)}
            for name, c in versions.channels.items()
        },
        "autopilotMinVersion": versions.autopilot_min_version,
    }


def _versions(document: dict[str, Any]) -> KubernetesVersions:
    return KubernetesVersions(
        default_version=str(document["defaultVersion"]),
        supported_versions=tuple(str(v) for v in document["supportedVersions"]),
        channels={
            str(name): ChannelVersions(str(c["defaultVersion"]), tuple(str(v) for v in c["validVersions"]))
            for name, c in (document.get("channels") or {}).items()
        },
        autopilot_min_version=document.get("autopilotMinVersion"),
        upgrade_warnings=UPGRADE_WARNINGS,
    )


def region_document(catalog: RegionCatalog) -> dict[str, Any]:
    """The JSON stored for one region."""
    return {
        "zones": list(catalog.region.zones),
        "machineTypes": [
            {
                "name": m.name,
                "vcpu": m.vcpu,
                "memoryMb": m.memory_mb,
                "category": m.category,
                "architectures": list(m.architectures),
                "zones": list(m.zones),
                "onDemandPricePerHour": m.on_demand_price_per_hour,
                "spotPricePerHour": m.spot_price_per_hour,
                "osPlatform": m.os_platform,
            }
            for m in catalog.machine_types
        ],
        "kubernetes": {name: _versions_json(v) for name, v in catalog.kubernetes.items()},
    }


def region_catalog(region_id: str, document: dict[str, Any]) -> RegionCatalog:
    """One stored region back as a value."""
    return RegionCatalog(
        region=Region(region_id, tuple(str(z) for z in document.get("zones") or ())),
        machine_types=tuple(
            MachineType(
                name=str(m["name"]),
                vcpu=int(m["vcpu"]),
                memory_mb=int(m["memoryMb"]),
                category=str(m["category"]),
                architectures=tuple(str(a) for a in m.get("architectures") or ("x86_64",)),
                zones=tuple(str(z) for z in m.get("zones") or ()),
                on_demand_price_per_hour=str(m.get("onDemandPricePerHour") or ""),
                spot_price_per_hour=str(m.get("spotPricePerHour") or ""),
                os_platform=str(m.get("osPlatform") or "Linux"),
            )
            for m in document.get("machineTypes") or ()
        ),
        kubernetes={str(name): _versions(v) for name, v in (document.get("kubernetes") or {}).items()},
    )


def merged_catalog(snapshot: ProviderCatalog, regions: list[RegionCatalog], refreshed_at: str) -> ProviderCatalog:
    """The provider's catalog from its refreshed regions, over the snapshot (see the module doc).
    `refreshed_at` is the oldest region's refresh: the age a reader should assume."""
    if not regions:
        return snapshot
    order = {r.id: i for i, r in enumerate(snapshot.regions)}
    regions = sorted(regions, key=lambda r: (order.get(r.region.id, len(order)), r.region.id))
    machines: dict[str, MachineType] = {}
    zones: dict[str, list[str]] = {}
    for region in regions:
        for machine in region.machine_types:
            machines.setdefault(machine.name, machine)
            # A type with no zones listed is offered in every zone of the region.
            zones.setdefault(machine.name, []).extend(machine.zones or region.region.zones)
    machine_types = tuple(
        MachineType(
            m.name,
            m.vcpu,
            m.memory_mb,
            m.category,
            m.architectures,
            tuple(dict.fromkeys(zones[m.name])),
            m.on_demand_price_per_hour,
            m.spot_price_per_hour,
            m.os_platform,
        )
        for m in machines.values()
    )
    by_id = {r.region.id: r for r in regions}
    home = by_id.get(snapshot.default_region, regions[0])
    return ProviderCatalog(
        provider=snapshot.provider,
        provisioners=snapshot.provisioners,
        regions=tuple(r.region for r in regions),
        machine_types=machine_types,
        kubernetes=snapshot.kubernetes | home.kubernetes,
        default_region=snapshot.default_region if snapshot.default_region in by_id else regions[0].region.id,
        time_generated=refreshed_at,
        source=LIVE_SOURCE,
        regional_kubernetes={r.region.id: r.kubernetes for r in regions},
    )
