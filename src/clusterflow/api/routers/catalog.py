"""The provider catalog clients use to fill their forms: providers, regions, zones, machine
types and Kubernetes versions.

Answers come from the stored catalog (`records.catalog.current_catalog`: the scheduled refresh
from each cloud's API, over the snapshot shipped in `clusterflow.catalog`), the same value the
deploy checks, the update planner and the provider activities judge specs with, so a choice
offered here is never refused at deploy time. Each answer says how fresh it is (`refreshedAt`,
`source`). Only providers enabled on this control plane are listed; the others answer 404 like
anything else that does not exist here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Query, Request

from clusterflow.api.deps import AppSettings, Pool, Viewer
from clusterflow.api.errors import ApiError, request_id_of
from clusterflow.api.schemas.catalog import (
    CatalogEnvelope,
    CatalogSource,
    ChannelVersionsView,
    KubernetesVersionsView,
    MachineTypeView,
    ProviderCatalogState,
    ProvidersEnvelope,
    UpgradePathView,
)
from clusterflow.api.schemas.common import ERRORS
from clusterflow.catalog import (
    CATALOGS,
    LIVE_SOURCE,
    Catalog,
    MachineType,
    ProviderCatalog,
    Region,
    parse_cpu,
    parse_memory_mb,
    version_key,
)
from clusterflow.records.catalog import current_catalog
from clusterflow.records.db import DbPool
from clusterflow.settings import Settings

router = APIRouter(prefix="/v1", tags=["catalog"])
T = TypeVar("T")

Category = Literal["GeneralPurpose", "ComputeOptimized", "MemoryOptimized", "AcceleratorOptimized", "GPU"]
Architecture = Literal["x86_64", "arm64"]


async def _provider(pool: DbPool, settings: Settings, provider_id: str) -> ProviderCatalog:
    if provider_id not in CATALOGS or provider_id not in settings.enabled_providers:
        raise ApiError(404, "PROVIDER_NOT_FOUND", f"provider {provider_id} is not offered here")
    catalog = (await current_catalog(pool)).get(provider_id)
    assert catalog is not None  # every known provider has at least its snapshot
    return catalog


def _answer(request: Request, catalog: ProviderCatalog, message: str, data: T) -> CatalogEnvelope[T]:
    return CatalogEnvelope[T](
        id=request_id_of(request),
        message=message,
        data=data,
        refreshedAt=catalog.refreshed_at,
        source="live" if catalog.source == LIVE_SOURCE else "snapshot",
    )


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


@router.get("/providers", response_model=ProvidersEnvelope, responses=ERRORS, summary="Providers offered here")
async def list_providers(request: Request, principal: Viewer, pool: Pool, settings: AppSettings) -> ProvidersEnvelope:
    providers = [p for p in settings.enabled_providers if p in CATALOGS]
    catalog: Catalog = await current_catalog(pool)
    states = []
    for name in providers:
        found = catalog.get(name) or CATALOGS[name]
        source: CatalogSource = "live" if found.source == LIVE_SOURCE else "snapshot"
        states.append(ProviderCatalogState(provider=name, refreshedAt=found.refreshed_at, source=source))
    return ProvidersEnvelope(
        id=request_id_of(request), message=f"{len(providers)} providers", data=providers, catalogs=states
    )


@router.get(
    "/providers/{providerId}/regions", response_model=CatalogEnvelope[list[str]], responses=ERRORS, summary="Regions"
)
async def list_regions(
    request: Request, providerId: str, principal: Viewer, pool: Pool, settings: AppSettings
) -> CatalogEnvelope[list[str]]:
    catalog = await _provider(pool, settings, providerId)
    return _answer(request, catalog, f"{len(catalog.regions)} regions", [r.id for r in catalog.regions])


@router.get(
    "/providers/{providerId}/regions/{regionId}/zones",
    response_model=CatalogEnvelope[list[str]],
    responses=ERRORS,
    summary="Zones of a region",
)
async def list_zones(
    request: Request, providerId: str, regionId: str, principal: Viewer, pool: Pool, settings: AppSettings
) -> CatalogEnvelope[list[str]]:
    catalog = await _provider(pool, settings, providerId)
    region = _region(catalog, regionId)
    return _answer(request, catalog, f"{len(region.zones)} zones", list(region.zones))


@router.get(
    "/providers/{providerId}/regions/{regionId}/machine-types",
    response_model=CatalogEnvelope[list[MachineTypeView]],
    responses=ERRORS,
    summary="Machine types offered in a region (or one zone), filtered",
)
async def list_machine_types(
    request: Request,
    providerId: str,
    regionId: str,
    principal: Viewer,
    pool: Pool,
    settings: AppSettings,
    cpuMin: Annotated[str | None, Query(max_length=16, description="Minimum vCPU ('1', '500m')")] = None,
    cpuMax: Annotated[str | None, Query(max_length=16, description="Maximum vCPU ('4', '2000m')")] = None,
    memMin: Annotated[str | None, Query(max_length=16, description="Minimum memory ('1Gi', '512Mi')")] = None,
    memMax: Annotated[str | None, Query(max_length=16, description="Maximum memory ('8Gi')")] = None,
    category: Category | None = None,
    architecture: Architecture | None = None,
    zoneId: Annotated[str | None, Query(max_length=64, description="Only types offered in this zone")] = None,
) -> CatalogEnvelope[list[MachineTypeView]]:
    catalog = await _provider(pool, settings, providerId)
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
    return _answer(request, catalog, f"{len(views)} machine types", views)


@router.get(
    "/providers/{providerId}/regions/{regionId}/machine-types/{machinetypeId}",
    response_model=CatalogEnvelope[MachineTypeView],
    responses=ERRORS,
    summary="One machine type in a region (or one zone)",
)
async def get_machine_type(
    request: Request,
    providerId: str,
    regionId: str,
    machinetypeId: str,
    principal: Viewer,
    pool: Pool,
    settings: AppSettings,
    zoneId: Annotated[str | None, Query(max_length=64, description="Zone (default: first zone offering it)")] = None,
) -> CatalogEnvelope[MachineTypeView]:
    catalog = await _provider(pool, settings, providerId)
    region = _region(catalog, regionId)
    zone = _zone(region, zoneId)
    machine = next((m for m in catalog.machine_types_in(region.id, zone) if m.name == machinetypeId), None)
    if machine is None:
        where = f"zone {zone}" if zone else f"region {region.id}"
        raise ApiError(404, "MACHINE_TYPE_NOT_FOUND", f"machine type {machinetypeId} is not offered in {where}")
    return _answer(request, catalog, "machine type", _machine_view(catalog, region, machine, zone))


@router.get(
    "/kubernetes-versions",
    response_model=CatalogEnvelope[KubernetesVersionsView],
    responses=ERRORS,
    summary="Kubernetes versions a provisioner offers in a region, with GKE channels and upgrade paths",
)
async def kubernetes_versions(
    request: Request,
    principal: Viewer,
    pool: Pool,
    settings: AppSettings,
    cloudProvider: Literal["local", "aws", "gcp", "azure"],
    provisionerType: Literal["local", "eks", "gke", "aks", "selfHosted"],
    region: Annotated[str | None, Query(max_length=64, description="Region (default: the provider's)")] = None,
    releaseChannel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] | None = None,
    autopilot: Annotated[bool | None, Query(description="Only GKE Autopilot versions")] = None,
) -> CatalogEnvelope[KubernetesVersionsView]:
    catalog = await _provider(pool, settings, cloudProvider)
    if provisionerType not in catalog.kubernetes:
        raise _query_error(
            "provisionerType",
            f"provisioner {provisionerType} does not run on {cloudProvider} (offered: {', '.join(catalog.kubernetes)})",
        )
    if region is not None and catalog.region(region) is None:
        raise _query_error("region", f"region {region} is not offered by provider {cloudProvider}")
    versions = catalog.versions(provisionerType, region or catalog.default_region)
    assert versions is not None  # the provisioner is in the catalog (checked above)
    if provisionerType != "gke" and (releaseChannel is not None or autopilot is not None):
        field = "releaseChannel" if releaseChannel is not None else "autopilot"
        raise _query_error(field, f"{field} applies to the gke provisioner only")
    if releaseChannel is not None and releaseChannel not in versions.channels:
        offered = ", ".join(versions.channels) or "none"
        raise _query_error("releaseChannel", f"GKE offers no {releaseChannel} channel here (offered: {offered})")
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
    return _answer(request, catalog, f"{len(supported)} versions", view)


def _default(preferred: str, offered: tuple[str, ...]) -> str:
    if preferred in offered or not offered:
        return preferred
    return max(offered, key=version_key)


def _query_error(field: str, message: str) -> ApiError:
    return ApiError(
        422, "VALIDATION_FAILED", f"{field}: {message}", [{"field": field, "message": message, "type": "value_error"}]
    )
