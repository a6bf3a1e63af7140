"""Provider catalog: regions, zones, machine types and Kubernetes versions per provider.

Each provider's shipped snapshot lives in one module (`local`, `aws`, `gcp`, `azure`);
`CATALOGS` indexes them and `SNAPSHOT` is them as one `Catalog`. The snapshot is the seed and the
fallback of the live catalog: a scheduled refresh (`workflows/catalog_refresh.py`) reads each
enabled cloud's versions, regions and machine types through its SDK and stores them
(`records/catalog.py`), and whatever was never refreshed is served from the snapshot. The API
serves the result, provider VALIDATE phases check specs against it, and the update planner takes
upgrade paths from it: each is handed the same `Catalog` value by its caller.
"""

from __future__ import annotations

from clusterflow.catalog import aws, azure, gcp, local
from clusterflow.catalog.model import (
    LIVE_SOURCE,
    SNAPSHOT_SOURCE,
    Catalog,
    ChannelVersions,
    KubernetesVersions,
    MachineType,
    ProviderCatalog,
    Region,
    RegionCatalog,
    UpgradePath,
    minor_of,
    parse_cpu,
    parse_memory_mb,
    version_key,
)

CATALOGS: dict[str, ProviderCatalog] = {c.provider: c for c in (local.CATALOG, aws.CATALOG, gcp.CATALOG, azure.CATALOG)}
# The shipped snapshot as one value: what callers with no database (tools, unit checks) use.
SNAPSHOT = Catalog(CATALOGS)


def catalog_for(provider: str) -> ProviderCatalog | None:
    return CATALOGS.get(provider)


def kubernetes_versions(provider: str, provisioner: str) -> KubernetesVersions | None:
    catalog = CATALOGS.get(provider)
    return catalog.kubernetes.get(provisioner) if catalog else None


__all__ = [
    "CATALOGS",
    "LIVE_SOURCE",
    "SNAPSHOT",
    "SNAPSHOT_SOURCE",
    "Catalog",
    "ChannelVersions",
    "KubernetesVersions",
    "MachineType",
    "ProviderCatalog",
    "Region",
    "RegionCatalog",
    "UpgradePath",
    "catalog_for",
    "kubernetes_versions",
    "minor_of",
    "parse_cpu",
    "parse_memory_mb",
    "version_key",
]
