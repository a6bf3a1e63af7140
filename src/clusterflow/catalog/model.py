"""The shapes of provider catalog data, and the queries every consumer shares.

A `Catalog` is one value holding every provider's `ProviderCatalog`. It comes from one of two
places: the snapshot shipped in this package (one module per provider, reviewed like code), or
the stored catalog a scheduled refresh wrote to PostgreSQL from the clouds' own APIs
(`records/catalog.py` loads it, over the snapshot). Either way the API, the provider activities
(VALIDATE phases) and the update planner are handed the *same* value by their caller, so none of
them can accept a version or machine type another refuses. Nothing here does I/O, so workflows
may import it too.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

CATEGORIES = ("GeneralPurpose", "ComputeOptimized", "MemoryOptimized", "AcceleratorOptimized", "GPU")
ARCHITECTURES = ("x86_64", "arm64")


@dataclass(frozen=True)
class MachineType:
    name: str
    vcpu: int
    memory_mb: int
    category: str
    architectures: tuple[str, ...] = ("x86_64",)
    # Zones (across regions) where the type is offered; empty means every zone of every region.
    zones: tuple[str, ...] = ()
    on_demand_price_per_hour: str = ""
    spot_price_per_hour: str = ""
    os_platform: str = "Linux"

    def offered_in(self, zone: str) -> bool:
        return not self.zones or zone in self.zones


@dataclass(frozen=True)
class Region:
    id: str
    zones: tuple[str, ...]


@dataclass(frozen=True)
class UpgradePath:
    from_version: str
    to_version: str
    upgrade_type: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelVersions:
    default_version: str
    valid_versions: tuple[str, ...]


@dataclass(frozen=True)
class KubernetesVersions:
    """The Kubernetes versions one provisioner offers, oldest first, at minor granularity
    (clouds resolve a minor to their latest patch)."""

    default_version: str
    supported_versions: tuple[str, ...]
    channels: dict[str, ChannelVersions] = field(default_factory=dict)
    # Oldest version offered to GKE Autopilot clusters; None when autopilot does not apply.
    autopilot_min_version: str | None = None
    # What a client must know before moving to a version, keyed by the target minor.
    upgrade_warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def versions(self, channel: str | None = None, autopilot: bool = False) -> tuple[str, ...]:
        versions = self.channels[channel].valid_versions if channel else self.supported_versions
        if autopilot and self.autopilot_min_version:
            floor = version_key(self.autopilot_min_version)
            versions = tuple(v for v in versions if version_key(v) >= floor)
        return versions

    def upgrade_paths(self, versions: tuple[str, ...] | None = None) -> list[UpgradePath]:
        """One minor at a time (the Kubernetes version-skew policy); patch upgrades are implicit."""
        offered = sorted(versions or self.supported_versions, key=version_key)
        return [
            UpgradePath(older, newer, "MINOR", self.upgrade_warnings.get(newer, ()))
            for older, newer in itertools.pairwise(offered)
            if version_key(newer)[1] - version_key(older)[1] == 1
        ]

    def upgrade_path(self, from_version: str, to_version: str) -> UpgradePath | None:
        """The allowed path between two versions (patch levels ignored), or None."""
        start, end = minor_of(from_version), minor_of(to_version)
        if start == end and end in self.supported_versions:
            return UpgradePath(from_version, to_version, "PATCH")
        for path in self.upgrade_paths():
            if path.from_version == start and path.to_version == end:
                return UpgradePath(from_version, to_version, path.upgrade_type, path.warnings)
        return None


SNAPSHOT_SOURCE = "snapshot"
LIVE_SOURCE = "live"


@dataclass(frozen=True)
class ProviderCatalog:
    provider: str
    provisioners: tuple[str, ...]
    regions: tuple[Region, ...]
    machine_types: tuple[MachineType, ...]
    kubernetes: dict[str, KubernetesVersions]
    default_region: str
    time_generated: str
    # Where the data came from: the shipped snapshot, or a refresh from the cloud's API.
    source: str = SNAPSHOT_SOURCE
    # Versions a cloud publishes per region (GKE per location, AKS per region), by region then
    # provisioner; a region absent here offers `kubernetes`.
    regional_kubernetes: dict[str, dict[str, KubernetesVersions]] = field(default_factory=dict)

    @property
    def refreshed_at(self) -> str:
        return self.time_generated

    def versions(self, provisioner: str, region: str | None = None) -> KubernetesVersions | None:
        """The versions `provisioner` offers in `region` (or provider-wide without one)."""
        regional = self.regional_kubernetes.get(region or "", {})
        return regional.get(provisioner) or self.kubernetes.get(provisioner)

    def region(self, region_id: str) -> Region | None:
        return next((r for r in self.regions if r.id == region_id), None)

    def machine_type(self, name: str) -> MachineType | None:
        return next((m for m in self.machine_types if m.name == name), None)

    def machine_types_in(self, region_id: str, zone: str | None = None) -> list[MachineType]:
        region = self.region(region_id)
        if region is None:
            return []
        zones = (zone,) if zone else region.zones
        return [m for m in self.machine_types if any(m.offered_in(z) for z in zones)]


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a version like 1.31, 1.31.6 or 1.31.6-gke.1020000."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("-")[0]))


def minor_of(version: str) -> str:
    major, minor = version_key(version)[:2]
    return f"{major}.{minor}"


_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_MEMORY_MB = {None: 1 / (1024 * 1024), "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
_MEMORY_MB |= {"K": 1000 / 1024 / 1024, "M": 1000**2 / 1024**2, "G": 1000**3 / 1024**2, "T": 1000**4 / 1024**2}


def parse_cpu(text: str) -> float:
    """Kubernetes CPU quantity ('2', '0.5', '500m') in cores; ValueError if malformed."""
    match = _CPU.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a CPU quantity (examples: '2', '500m')")
    value = float(match.group(1))
    return value / 1000 if match.group(2) else value


def parse_memory_mb(text: str) -> float:
    """Kubernetes memory quantity ('8Gi', '512Mi', '1G') in MiB; ValueError if malformed."""
    match = _MEMORY.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a memory quantity (examples: '8Gi', '512Mi')")
    return float(match.group(1)) * _MEMORY_MB[match.group(2)]


@dataclass(frozen=True)
class RegionCatalog:
    """What one region offers, as a refresh reads it from the cloud: the unit stored per
    provider and region."""

    region: Region
    machine_types: tuple[MachineType, ...]
    kubernetes: dict[str, KubernetesVersions]


@dataclass(frozen=True)
class Catalog:
    """Every provider's catalog: what validation, the planner and the catalog routes read."""

    providers: dict[str, ProviderCatalog]

    def get(self, provider: str) -> ProviderCatalog | None:
        return self.providers.get(provider)

    def versions(self, provider: str, provisioner: str, region: str | None = None) -> KubernetesVersions | None:
        catalog = self.providers.get(provider)
        return catalog.versions(provisioner, region) if catalog else None
