"""AWS (EKS and self-hosted) catalog: regions, zones, instance types and EKS versions.

Prices are us-east-1 Linux on-demand/spot list prices in USD at `time_generated`; they are a
guide for forms, not a bill.
"""

from __future__ import annotations

from clusterflow.catalog.model import KubernetesVersions, MachineType, ProviderCatalog, Region
from clusterflow.catalog.upstream import UPGRADE_WARNINGS

_REGIONS = (
    Region("us-east-1", tuple(f"us-east-1{z}" for z in "abcdf")),
    Region("us-east-2", tuple(f"us-east-2{z}" for z in "abc")),
    Region("us-west-2", tuple(f"us-west-2{z}" for z in "abcd")),
    Region("eu-west-1", tuple(f"eu-west-1{z}" for z in "abc")),
    Region("eu-central-1", tuple(f"eu-central-1{z}" for z in "abc")),
    Region("ap-southeast-1", tuple(f"ap-southeast-1{z}" for z in "abc")),
)
_GPU_ZONES = ("us-east-1a", "us-east-1b", "us-east-1c", "us-west-2a", "us-west-2b", "eu-west-1a", "eu-central-1a")

_MACHINE_TYPES = (
    MachineType("t3.medium", 2, 4096, "GeneralPurpose", ("x86_64",), (), "0.0416", "0.0125"),
    MachineType("t3.large", 2, 8192, "GeneralPurpose", ("x86_64",), (), "0.0832", "0.0250"),
    MachineType("m5.large", 2, 8192, "GeneralPurpose", ("x86_64",), (), "0.0960", "0.0350"),
    MachineType("m5.xlarge", 4, 16384, "GeneralPurpose", ("x86_64",), (), "0.1920", "0.0700"),
    MachineType("m5.2xlarge", 8, 32768, "GeneralPurpose", ("x86_64",), (), "0.3840", "0.1400"),
    MachineType("m5.4xlarge", 16, 65536, "GeneralPurpose", ("x86_64",), (), "0.7680", "0.2800"),
    MachineType("m6i.large", 2, 8192, "GeneralPurpose", ("x86_64",), (), "0.0960", "0.0380"),
    MachineType("m6i.xlarge", 4, 16384, "GeneralPurpose", ("x86_64",), (), "0.1920", "0.0760"),
    MachineType("m6i.2xlarge", 8, 32768, "GeneralPurpose", ("x86_64",), (), "0.3840", "0.1520"),
    MachineType("m7g.large", 2, 8192, "GeneralPurpose", ("arm64",), (), "0.0816", "0.0330"),
    MachineType("m7g.xlarge", 4, 16384, "GeneralPurpose", ("arm64",), (), "0.1632", "0.0660"),
    MachineType("c6i.xlarge", 4, 8192, "ComputeOptimized", ("x86_64",), (), "0.1700", "0.0690"),
    MachineType("c7g.xlarge", 4, 8192, "ComputeOptimized", ("arm64",), (), "0.1450", "0.0590"),
    MachineType("r6i.large", 2, 16384, "MemoryOptimized", ("x86_64",), (), "0.1260", "0.0500"),
    MachineType("r6i.xlarge", 4, 32768, "MemoryOptimized", ("x86_64",), (), "0.2520", "0.1000"),
    MachineType("g5.xlarge", 4, 16384, "GPU", ("x86_64",), _GPU_ZONES, "1.0060", "0.4020"),
    MachineType("inf2.xlarge", 4, 16384, "AcceleratorOptimized", ("x86_64",), _GPU_ZONES, "0.7582", "0.3030"),
)

# What the EKS provider deploys and what a deploy may ask for (exact strings: the provider
# passes the version to CreateCluster as given, so a patch level such as 1.31.2 is refused).
KUBERNETES_VERSIONS: tuple[str, ...] = ("1.29", "1.30", "1.31", "1.32", "1.33")
# The version a deploy without `provisioner.eks.kubernetesVersion` gets. (The catalog's advertised
# default below is newer; the provider has always deployed this one.)
DEFAULT_KUBERNETES_VERSION = "1.31"
# Generic sizes of the portable document, as EC2 instance types (every one is in the catalog).
MACHINE_TYPES: dict[str, str] = {
    "small": "t3.medium",
    "medium": "m5.xlarge",
    "large": "m5.2xlarge",
    "xlarge": "m5.4xlarge",
}
# `provisioner.eks.amiFamily` -> the EKS managed node group `amiType` (x86_64 nodes).
AMI_TYPES: dict[str, str] = {
    "AmazonLinux2023": "AL2023_x86_64_STANDARD",
    "AmazonLinux2": "AL2_x86_64",
    "Bottlerocket": "BOTTLEROCKET_x86_64",
}

_EKS = KubernetesVersions(
    default_version="1.32",
    supported_versions=KUBERNETES_VERSIONS,
    upgrade_warnings=UPGRADE_WARNINGS,
)

CATALOG = ProviderCatalog(
    provider="aws",
    provisioners=("eks", "selfHosted"),
    regions=_REGIONS,
    machine_types=_MACHINE_TYPES,
    kubernetes={
        "eks": _EKS,
        "selfHosted": KubernetesVersions("1.32", ("1.30", "1.31", "1.32", "1.33"), upgrade_warnings=UPGRADE_WARNINGS),
    },
    default_region="us-east-1",
    time_generated="2026-11-01T00:00:00Z",
)
