"""Catalog responses, in the reference's shapes (`vCPU`, `memoryMb`, `upgradePaths`...).

`data` keeps the reference's shapes; how fresh the answer is goes beside it in the envelope
(`refreshedAt`, `source`), so a client written for the reference reads the same `data`.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from clusterflow.api.schemas.common import Envelope

T = TypeVar("T")

CatalogSource = Literal["snapshot", "live"]
_SOURCE = (
    "Where the answer comes from: `live` (read from the cloud's API by the scheduled refresh) or "
    "`snapshot` (shipped with this release: not refreshed yet, or the provider has no API to read)"
)
_REFRESHED = "When the provider's catalog was read (the oldest region's refresh for a live catalog), UTC ISO 8601"


class MachineTypeInfos(BaseModel):
    zones: list[str] = Field(default_factory=list, description="The region's zones that offer the type")


class MachineTypeView(BaseModel):
    name: str
    vCPU: int
    memoryMb: int
    category: str = Field(description="GeneralPurpose, ComputeOptimized, MemoryOptimized, AcceleratorOptimized or GPU")
    architecture: list[str] = Field(description="x86_64 and/or arm64")
    zone: str = Field(description="The zone the answer is for")
    osPlatform: str
    onDemandPricePerHour: str = Field(description="USD list price per hour, a guide only")
    spotPricePerHour: str
    timeGenerated: str = Field(description="When the catalog data was last refreshed (the envelope's refreshedAt)")
    infos: MachineTypeInfos = Field(
        default_factory=lambda: MachineTypeInfos(), description="Other facts: zones offering the type"
    )


class ChannelVersionsView(BaseModel):
    defaultVersion: str
    validVersions: list[str]


class UpgradePathView(BaseModel):
    fromVersion: str
    toVersion: str
    upgradeType: str = Field(description="MINOR (one minor version) or PATCH")
    warnings: list[str]


class CatalogError(BaseModel):
    message: str


class KubernetesVersionsView(BaseModel):
    defaultVersion: str
    supportedVersions: list[str]
    channelVersions: dict[str, ChannelVersionsView] = Field(
        default_factory=dict, description="GKE release channels (RAPID, REGULAR, STABLE, EXTENDED); empty elsewhere"
    )
    upgradePaths: list[UpgradePathView]
    error: CatalogError | None = None


class CatalogEnvelope(Envelope[T], Generic[T]):
    refreshedAt: str = Field(description=_REFRESHED)
    source: CatalogSource = Field(description=_SOURCE)


class ProviderCatalogState(BaseModel):
    provider: str
    refreshedAt: str = Field(description=_REFRESHED)
    source: CatalogSource = Field(description=_SOURCE)


class ProvidersEnvelope(Envelope[list[str]]):
    catalogs: list[ProviderCatalogState] = Field(description="How fresh each listed provider's catalog is")
