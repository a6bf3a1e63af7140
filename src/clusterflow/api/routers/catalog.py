"""The provider catalog clients use to fill their forms: providers, regions, zones, machine
types and Kubernetes versions.

Answers come from `clusterflow.catalog`, the same data the provider activities validate specs
against, so a choice offered here is never refused at deploy time. Only providers enabled on this
control plane are listed; the others answer 404 like anything else that does not exist here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from clusterflow.api.deps import AppSettings, Viewer
from clusterflow.api.errors import ApiError, request_id_of
from clusterflow.api.schemas.catalog import (
    ChannelVersionsView,
    KubernetesVersionsView,
    MachineTypeView,
    UpgradePathView,
)
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.catalog import CATALOGS, MachineType, ProviderCatalog, Region, parse_cpu, parse_memory_mb, version_key
from clusterflow.settings import Settings

router = APIRouter(prefix="/v1", tags=["catalog"])

Category = Literal["GeneralPurpose", "ComputeOptimized", "MemoryOptimized", "AcceleratorOptimized", "GPU"]
Architecture = Literal["x86_64", "arm64"]


def _provider(settings: Settings, provider_id: str) -> ProviderCatalog:
    catalog = CATALOGS.get(provider_id)
    if catalog is None or provider_id not in settings.enabled_providers:
        raise ApiError(404, "PROVIDER_NOT_FOUND", f"provider {provider_id} is not offered here")
    return catalog


def _region(catalog: ProviderCatalog, region_id: str) -> Region:
    region = catalog.region(region_id)
    if region is None:
        raise ApiError(404, "REGION_NOT_FOUND", f"region {region_id} is not offered by provider {catalog.provider}")
    return region


def _zone(region: Region, zone_id: str | None) -> str | None:
    if zone_id is not None and zone_id not in region.zones:
        raise ApiError(404, "ZONE_NOT_FOUND", f"zone {zone_id} is not in region {region.id}")
    return zone_id


def _machine_view(catalog: ProviderCatalog, region: Region, machine: MachineType, zone: str | None) -> MachineTypeView:
    offered = [z for z in region.zones if machine.offered_in(z)]
    return MachineTypeView(
        name=machine.name,
        vCPU=machine.vcpu,
        memoryMb=machine.memory_mb,
        category=machine.category,
        architecture=list(machine.architectures),
        zone=zone or offered[0],
        osPlatform=machine.os_platform,
        onDemandPricePerHour=machine.on_demand_price_per_hour,
        spotPricePerHour=machine.spot_price_per_hour,
        timeGenerated=catalog.time_generated,
        infos={"zones": offered},
    )


def _quantity(field: str, text: str | None, parse: Callable[[str], float]) -> float | None:
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as err:
        raise ApiError(
            422, "VALIDATION_FAILED", f"{field}: {err}", [{"field": field, "message": str(err), "type": "quantity"}]
        ) from err


@router.get("/providers", response_model=Envelope[list[str]], responses=ERRORS, summary="Providers offered here")
async def list_providers(request: Request, principal: Viewer, settings: AppSettings) -> Envelope[list[str]]:
    providers = [p for p in settings.enabled_providers if p in CATALOGS]
    return Envelope(id=request_id_of(request), message=f"{len(providers)} providers", data=providers)


@router.get("/providers/{providerId}/regions", response_model=Envelope[list[str]], responses=ERRORS, summary="Regions")
async def list_regions(
    request: Request, providerId: str, principal: Viewer, settings: AppSettings
) -> Envelope[list[str]]:
    catalog = _provider(settings, providerId)
    return Envelope(
        id=request_id_of(request), message=f"{len(catalog.regions)} regions", data=[r.id for r in catalog.regions]
    )


@router.get(
    "/providers/{providerId}/regions/{regionId}/zones",
    response_model=Envelope[list[str]],
    responses=ERRORS,
    summary="Zones of a region",
)
async def list_zones(
    request: Request, providerId: str, regionId: str, principal: Viewer, settings: AppSettings
) -> Envelope[list[str]]:
    region = _region(_provider(settings, providerId), regionId)
    return Envelope(id=request_id_of(request), message=f"{len(region.zones)} zones", data=list(region.zones))


@router.get(
    "/providers/{providerId}/regions/{regionId}/machine-types",
    response_model=Envelope[list[MachineTypeView]],
    responses=ERRORS,
    summary="Machine types offered in a region (or one zone), filtered",
)
async def list_machine_types(
    request: Request,
    providerId: str,
    regionId: str,
    principal: Viewer,
    settings: AppSettings,
    cpuMin: Annotated[str | None, Query(max_length=16, description="Minimum vCPU ('1', '500m')")] = None,
    cpuMax: Annotated[str | None, Query(max_length=16, description="Maximum vCPU ('4', '2000m')")] = None,
    memMin: Annotated[str | None, Query(max_length=16, description="Minimum memory ('1Gi', '512Mi')")] = None,
    memMax: Annotated[str | None, Query(max_length=16, description="Maximum memory ('8Gi')")] = None,
    category: Category | None = None,
    architecture: Architecture | None = None,
    zoneId: Annotated[str | None, Query(max_length=64, description="Only types offered in this zone")] = None,
) -> Envelope[list[MachineTypeView]]:
    catalog = _provider(settings, providerId)
    region = _region(catalog, regionId)
    zone = _zone(region, zoneId)
    cpu_min, cpu_max = _quantity("cpuMin", cpuMin, parse_cpu), _quantity("cpuMax", cpuMax, parse_cpu)
    mem_min, mem_max = _quantity("memMin", memMin, parse_memory_mb), _quantity("memMax", memMax, parse_memory_mb)
    chosen = [
        m
        for m in catalog.machine_types_in(region.id, zone)
        if (cpu_min is None or m.vcpu >= cpu_min)
        and (cpu_max is None or m.vcpu <= cpu_max)
        and (mem_min is None or m.memory_mb >= mem_min)
        and (mem_max is None or m.memory_mb <= mem_max)
        and (category is None or m.category == category)
        and (architecture is None or architecture in m.architectures)
    ]
    views = [_machine_view(catalog, region, m, zone) for m in chosen]
    return Envelope(id=request_id_of(request), message=f"{len(views)} machine types", data=views)


@router.get(
    "/providers/{providerId}/regions/{regionId}/machine-types/{machinetypeId}",
    response_model=Envelope[MachineTypeView],
    responses=ERRORS,
    summary="One machine type in a region (or one zone)",
)
async def get_machine_type(
    request: Request,
    providerId: str,
    regionId: str,
    machinetypeId: str,
    principal: Viewer,
    settings: AppSettings,
    zoneId: Annotated[str | None, Query(max_length=64, description="Zone (default: first zone offering it)")] = None,
) -> Envelope[MachineTypeView]:
    catalog = _provider(settings, providerId)
    region = _region(catalog, regionId)
    zone = _zone(region, zoneId)
    machine = next((m for m in catalog.machine_types_in(region.id, zone) if m.name == machinetypeId), None)
    if machine is None:
        where = f"zone {zone}" if zone else f"region {region.id}"
        raise ApiError(404, "MACHINE_TYPE_NOT_FOUND", f"machine type {machinetypeId} is not offered in {where}")
    return Envelope(
        id=request_id_of(request), message="machine type", data=_machine_view(catalog, region, machine, zone)
    )


@router.get(
    "/kubernetes-versions",
    response_model=Envelope[KubernetesVersionsView],
    responses=ERRORS,
    summary="Kubernetes versions a provisioner offers, with GKE channels and upgrade paths",
)
async def kubernetes_versions(
    request: Request,
    principal: Viewer,
    settings: AppSettings,
    cloudProvider: Literal["local", "aws", "gcp", "azure"],
    provisionerType: Literal["local", "eks", "gke", "aks", "selfHosted"],
    region: Annotated[str | None, Query(max_length=64, description="Region (default: the provider's)")] = None,
    releaseChannel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] | None = None,
    autopilot: Annotated[bool | None, Query(description="Only GKE Autopilot versions")] = None,
) -> Envelope[KubernetesVersionsView]:
    catalog = _provider(settings, cloudProvider)
    versions = catalog.kubernetes.get(provisionerType)
    if versions is None:
        raise _query_error(
            "provisionerType",
            f"provisioner {provisionerType} does not run on {cloudProvider} (offered: {', '.join(catalog.kubernetes)})",
        )
    if region is not None and catalog.region(region) is None:
        raise _query_error("region", f"region {region} is not offered by provider {cloudProvider}")
    if provisionerType != "gke" and (releaseChannel is not None or autopilot is not None):
        field = "releaseChannel" if releaseChannel is not None else "autopilot"
        raise _query_error(field, f"{field} applies to the gke provisioner only")
    channels = [releaseChannel] if releaseChannel else list(versions.channels)
    channel_views: dict[str, ChannelVersionsView] = {}
    for name in channels:
        valid = versions.versions(name, bool(autopilot))
        channel_views[name] = ChannelVersionsView(
            defaultVersion=_default(versions.channels[name].default_version, valid), validVersions=list(valid)
        )
    supported = versions.versions(releaseChannel, bool(autopilot))
    default = versions.channels[releaseChannel].default_version if releaseChannel else versions.default_version
    view = KubernetesVersionsView(
        defaultVersion=_default(default, supported),
        supportedVersions=list(supported),
        channelVersions=channel_views,
        upgradePaths=[
            UpgradePathView(
                fromVersion=p.from_version,
                toVersion=p.to_version,
                upgradeType=p.upgrade_type,
                warnings=list(p.warnings),
            )
            for p in versions.upgrade_paths(supported)
        ],
    )
    return Envelope(id=request_id_of(request), message=f"{len(supported)} versions", data=view)


def _default(preferred: str, offered: tuple[str, ...]) -> str:
    if preferred in offered or not offered:
        return preferred
    return max(offered, key=version_key)


def _query_error(field: str, message: str) -> ApiError:
    return ApiError(
        422, "VALIDATION_FAILED", f"{field}: {message}", [{"field": field, "message": message, "type": "value_error"}]
    )
