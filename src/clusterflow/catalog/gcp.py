"""GCP (GKE and self-hosted) catalog: regions, zones, machine types, GKE versions and channels.

GKE publishes versions per release channel; `channels` mirrors that (RAPID newest, STABLE
oldest, EXTENDED for long support), and a cluster without a channel may use any supported
version. Autopilot clusters only get versions from `autopilot_min_version` up.
"""

from __future__ import annotations

from clusterflow.catalog.model import ChannelVersions, KubernetesVersions, MachineType, ProviderCatalog, Region
from clusterflow.catalog.upstream import UPGRADE_WARNINGS

_REGIONS = (
    Region("us-central1", ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f")),
    Region("us-east1", ("us-east1-b", "us-east1-c", "us-east1-d")),
    Region("us-west1", ("us-west1-a", "us-west1-b", "us-west1-c")),
    Region("europe-west1", ("europe-west1-b", "europe-west1-c", "europe-west1-d")),
    Region("europe-west4", ("europe-west4-a", "europe-west4-b", "europe-west4-c")),
    Region("asia-southeast1", ("asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c")),
)
_ARM_ZONES = (
    "us-central1-a",
    "us-central1-b",
    "us-central1-f",
    "europe-west4-a",
    "europe-west4-b",
    "asia-southeast1-b",
)
_GPU_ZONES = ("us-central1-a", "us-central1-b", "us-east1-c", "europe-west4-a", "europe-west4-b", "asia-southeast1-b")

_MACHINE_TYPES = (
    MachineType("e2-standard-2", 2, 8192, "GeneralPurpose", ("x86_64",), (), "0.0670", "0.0201"),
    MachineType("e2-standard-4", 4, 16384, "GeneralPurpose", ("x86_64",), (), "0.1340", "0.0402"),
    MachineType("e2-standard-8", 8, 32768, "GeneralPurpose", ("x86_64",), (), "0.2681", "0.0804"),
    MachineType("n2-standard-4", 4, 16384, "GeneralPurpose", ("x86_64",), (), "0.1942", "0.0473"),
    MachineType("n2-standard-8", 8, 32768, "GeneralPurpose", ("x86_64",), (), "0.3885", "0.0946"),
    MachineType("t2a-standard-4", 4, 16384, "GeneralPurpose", ("arm64",), _ARM_ZONES, "0.1540", "0.0370"),
    MachineType("c2-standard-8", 8, 32768, "ComputeOptimized", ("x86_64",), (), "0.4176", "0.1013"),
    MachineType("n2-highmem-4", 4, 32768, "MemoryOptimized", ("x86_64",), (), "0.2620", "0.0638"),
    MachineType("a2-highgpu-1g", 12, 87040, "AcceleratorOptimized", ("x86_64",), _GPU_ZONES, "3.6730", "1.1019"),
    MachineType("g2-standard-8", 8, 32768, "GPU", ("x86_64",), _GPU_ZONES, "0.8536", "0.2561"),
)

_GKE = KubernetesVersions(
    default_version="1.32",
    supported_versions=("1.29", "1.30", "1.31", "1.32", "1.33"),
    channels={
        "RAPID": ChannelVersions("1.33", ("1.31", "1.32", "1.33")),
        "REGULAR": ChannelVersions("1.32", ("1.30", "1.31", "1.32")),
        "STABLE": ChannelVersions("1.31", ("1.30", "1.31")),
        "EXTENDED": ChannelVersions("1.30", ("1.29", "1.30", "1.31")),
    },
    autopilot_min_version="1.30",
    upgrade_warnings=UPGRADE_WARNINGS,
)

CATALOG = ProviderCatalog(
    provider="gcp",
    provisioners=("gke", "selfHosted"),
    regions=_REGIONS,
    machine_types=_MACHINE_TYPES,
    kubernetes={
        "gke": _GKE,
        "selfHosted": KubernetesVersions("1.32", ("1.30", "1.31", "1.32", "1.33"), upgrade_warnings=UPGRADE_WARNINGS),
    },
    default_region="us-central1",
    time_generated="2026-11-01T00:00:00Z",
)
