"""Provider catalog: regions, zones, machine types and Kubernetes versions per provider.

Each provider's data lives in one module (`local`, `aws`, `gcp`, `azure`); `CATALOGS` indexes
them. The API serves it, provider VALIDATE phases check specs against it, and the update planner
takes upgrade paths from it.
"""

from __future__ import annotations

from clusterflow.catalog import aws, azure, gcp, local
from clusterflow.catalog.model import (
    ChannelVersions,
    KubernetesVersions,
    MachineType,
    ProviderCatalog,
    Region,
    UpgradePath,
    minor_of,
    parse_cpu,
    parse_memory_mb,
    version_key,
)

CATALOGS: dict[str, ProviderCatalog] = {c.provider: c for c in (local.CATALOG, aws.CATALOG, gcp.CATALOG, azure.CATALOG)}


def catalog_for(provider: str) -> ProviderCatalog | None:
    return CATALOGS.get(provider)


def kubernetes_versions(provider: str, provisioner: str) -> KubernetesVersions | None:
    catalog = CATALOGS.get(provider)
    return catalog.kubernetes.get(provisioner) if catalog else None


__all__ = [
    "CATALOGS",
    "ChannelVersions",
    "KubernetesVersions",
    "MachineType",
    "ProviderCatalog",
    "Region",
    "UpgradePath",
    "catalog_for",
    "kubernetes_versions",
    "minor_of",
    "parse_cpu",
    "parse_memory_mb",
    "version_key",
]
