"""Catalog responses, in the reference's shapes (`vCPU`, `memoryMb`, `upgradePaths`...)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
    timeGenerated: str = Field(description="When the catalog data was last refreshed")
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
