"""Azure (AKS and self-hosted) catalog: regions, availability zones, VM sizes, AKS versions.

Azure numbers availability zones per region ("1", "2", "3"); the catalog names them
`<region>-<n>` so a zone identifies its region, and `aks_zone` turns one back into what the
ARM API takes.
"""

from __future__ import annotations

import re

from clusterflow.catalog.model import KubernetesVersions, MachineType, ProviderCatalog, Region
from clusterflow.catalog.upstream import UPGRADE_WARNINGS

# AKS agent pool names: lowercase letters and digits, starting with a letter, at most 12 characters.
POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")

_REGION_IDS = ("eastus", "eastus2", "westus2", "westeurope", "northeurope", "southeastasia")
_REGIONS = tuple(Region(r, tuple(f"{r}-{n}" for n in (1, 2, 3))) for r in _REGION_IDS)
_ARM_ZONES = ("eastus-1", "eastus-2", "eastus-3", "westeurope-1", "westeurope-2", "northeurope-1", "westus2-1")
_GPU_ZONES = ("eastus-1", "eastus-2", "westus2-2", "westeurope-1", "southeastasia-1")

_MACHINE_TYPES = (
    MachineType("Standard_D2s_v5", 2, 8192, "GeneralPurpose", ("x86_64",), (), "0.0960", "0.0192"),
    MachineType("Standard_D4s_v5", 4, 16384, "GeneralPurpose", ("x86_64",), (), "0.1920", "0.0384"),
    MachineType("Standard_D8s_v5", 8, 32768, "GeneralPurpose", ("x86_64",), (), "0.3840", "0.0768"),
    MachineType("Standard_D4ps_v5", 4, 16384, "GeneralPurpose", ("arm64",), _ARM_ZONES, "0.1540", "0.0308"),
    MachineType("Standard_F4s_v2", 4, 8192, "ComputeOptimized", ("x86_64",), (), "0.1690", "0.0338"),
    MachineType("Standard_E4s_v5", 4, 32768, "MemoryOptimized", ("x86_64",), (), "0.2520", "0.0504"),
    MachineType("Standard_NC4as_T4_v3", 4, 28672, "GPU", ("x86_64",), _GPU_ZONES, "0.5260", "0.1052"),
    MachineType("Standard_ND96asr_v4", 96, 921600, "AcceleratorOptimized", ("x86_64",), _GPU_ZONES, "27.1970", "5.44"),
)

_AKS = KubernetesVersions(
    default_version="1.32",
    supported_versions=("1.30", "1.31", "1.32", "1.33"),
    upgrade_warnings=UPGRADE_WARNINGS,
)

CATALOG = ProviderCatalog(
    provider="azure",
    provisioners=("aks", "selfHosted"),
    regions=_REGIONS,
    machine_types=_MACHINE_TYPES,
    kubernetes={
        "aks": _AKS,
        "selfHosted": KubernetesVersions("1.32", ("1.30", "1.31", "1.32", "1.33"), upgrade_warnings=UPGRADE_WARNINGS),
    },
    default_region="eastus",
    time_generated="2026-11-01T00:00:00Z",
)


def aks_zone(zone: str) -> str:
    """`eastus-2` -> `2`, the form AKS agent pools take; a bare number passes through."""
    return zone.rsplit("-", 1)[-1]
