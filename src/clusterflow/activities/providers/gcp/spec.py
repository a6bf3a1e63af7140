"""The spec's `provisioner.gke` block: what it asks for, and its check against the GKE catalog.

Pure functions over the cluster document (no client), so VALIDATE fails with a permanent
INVALID_SPEC that names what is wrong before anything is created. The `clusterflow-cluster-id`
resource label (`OWNER_LABEL`) says whose a GKE cluster is.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.catalog import gcp as gcp_catalog
from clusterflow.catalog import minor_of
from clusterflow.workflows.contracts import ErrorCode

OWNER_LABEL = "clusterflow-cluster-id"


def gke_block(spec: dict[str, Any]) -> dict[str, Any]:
    return dict((spec.get("provisioner") or {}).get("gke") or {})


def node_groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list((((spec.get("clusterSpec") or {}).get("dataPlane") or {}).get("nodeGroups")) or [])


def owner_label(cluster_id: str) -> str:
    return cluster_id.lower()


def requested_version(spec: dict[str, Any]) -> str:
    gke = gke_block(spec)
    versions = gcp_catalog.CATALOG.kubernetes["gke"]
    if gke.get("kubernetesVersion"):
        return str(gke["kubernetesVersion"])
    if gke.get("releaseChannel"):
        return versions.channels[gke["releaseChannel"]].default_version
    return versions.default_version


def validate_spec(spec: dict[str, Any], region: str) -> None:
    """The spec against the GKE catalog; raises a permanent INVALID_SPEC naming what is wrong."""
    catalog = gcp_catalog.CATALOG
    versions = catalog.kubernetes["gke"]
    gke = gke_block(spec)

    def invalid(message: str) -> ProviderError:
        return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)

    if catalog.region(region) is None:
        raise invalid(f"region {region} is not a GKE region (offered: {', '.join(r.id for r in catalog.regions)})")
    version = requested_version(spec)
    channel = gke.get("releaseChannel")
    offered = versions.versions(channel, bool(gke.get("autopilot")))
    if minor_of(version) not in offered:
        where = f"the {channel} channel" if channel else "GKE"
        where += " for Autopilot" if gke.get("autopilot") else ""
        raise invalid(f"kubernetesVersion {version} is not offered by {where} (offered: {', '.join(offered)})")
    if gke.get("autopilot"):
        return
    zones = {z for r in catalog.regions if r.id == region for z in r.zones}
    for group in node_groups(spec):
        for zone in group.get("availabilityZones") or []:
            if zone not in zones:
                raise invalid(f"zone {zone} of node group {group['name']!r} is not in region {region}")
        for machine in group.get("machineTypes") or []:
            offered_in = catalog.machine_types_in(region)
            if machine not in {m.name for m in offered_in}:
                raise invalid(
                    f"machine type {machine!r} of node group {group['name']!r} is not offered in {region} "
                    f"(see GET /v1/providers/gcp/regions/{region}/machine-types)"
                )
