"""The `local` simulator's catalog: the one place its machine types and versions live."""

from __future__ import annotations

from clusterflow.catalog.model import KubernetesVersions, MachineType, ProviderCatalog, Region
from clusterflow.catalog.upstream import UPGRADE_WARNINGS

# name -> (vCPU, memory GiB); the simulator validates specs against these.
MACHINE_TYPES: dict[str, tuple[int, int]] = {"small": (2, 4), "medium": (4, 16), "large": (8, 32), "xlarge": (16, 64)}
KUBERNETES_VERSIONS: tuple[str, ...] = ("1.29", "1.30", "1.31", "1.32", "1.33")
DEFAULT_KUBERNETES_VERSION = "1.31"

CATALOG = ProviderCatalog(
    provider="local",
    provisioners=("local",),
    regions=(Region("local-1", ("local-1a", "local-1b", "local-1c")), Region("local-2", ("local-2a", "local-2b"))),
    machine_types=tuple(
        MachineType(name, cpu, mem * 1024, "GeneralPurpose", on_demand_price_per_hour="0", spot_price_per_hour="0")
        for name, (cpu, mem) in MACHINE_TYPES.items()
    ),
    kubernetes={
        "local": KubernetesVersions(
            default_version=DEFAULT_KUBERNETES_VERSION,
            supported_versions=KUBERNETES_VERSIONS,
            upgrade_warnings=UPGRADE_WARNINGS,
        )
    },
    default_region="local-1",
    time_generated="2026-11-01T00:00:00Z",
)
