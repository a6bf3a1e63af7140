"""The spec's `provisioner.aks` block: what it asks for, and its check against the AKS catalog.

The system pool is the spec's `controlPlane.nodeGroup` when given, else the first data-plane node
group. Agent pool names follow AKS rules (lowercase letters and digits, at most 12 characters).
The `clusterflow-cluster-id` tag (`OWNER_TAG`) says whose a cluster is.
"""

from __future__ import annotations

import re
from typing import Any

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.catalog import azure as azure_catalog
from clusterflow.catalog import minor_of
from clusterflow.workflows.contracts import ErrorCode

OWNER_TAG = "clusterflow-cluster-id"
POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")


def aks_block(spec: dict[str, Any]) -> dict[str, Any]:
    return dict((spec.get("provisioner") or {}).get("aks") or {})


def node_groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list((((spec.get("clusterSpec") or {}).get("dataPlane") or {}).get("nodeGroups")) or [])


def system_group(spec: dict[str, Any]) -> dict[str, Any]:
    control = (((spec.get("clusterSpec") or {}).get("controlPlane")) or {}).get("nodeGroup")
    return dict(control or node_groups(spec)[0])


def requested_version(spec: dict[str, Any]) -> str:
    return str(aks_block(spec).get("kubernetesVersion") or azure_catalog.CATALOG.kubernetes["aks"].default_version)


def validate_spec(spec: dict[str, Any], region: str) -> None:
    catalog = azure_catalog.CATALOG
    versions = catalog.kubernetes["aks"]

    def invalid(message: str) -> ProviderError:
        return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)

    region_info = catalog.region(region)
    if region_info is None:
        raise invalid(f"region {region} is not an AKS region (offered: {', '.join(r.id for r in catalog.regions)})")
    version = requested_version(spec)
    if minor_of(version) not in versions.supported_versions:
        raise invalid(
            f"kubernetesVersion {version} is not offered by AKS (offered: {', '.join(versions.supported_versions)})"
        )
    offered = {m.name for m in catalog.machine_types_in(region)}
    groups = [system_group(spec), *node_groups(spec)]
    for group in groups:
        if not POOL_NAME.match(group["name"]):
            raise invalid(
                f"node group name {group['name']!r} is not a valid AKS agent pool name "
                "(lowercase letters and digits, starting with a letter, at most 12 characters)"
            )
        for zone in group.get("availabilityZones") or []:
            if f"{region}-{azure_catalog.aks_zone(zone)}" not in region_info.zones:
                raise invalid(f"zone {zone} of node group {group['name']!r} is not in region {region}")
        for machine in group.get("machineTypes") or []:
            if machine not in offered:
                raise invalid(
                    f"VM size {machine!r} of node group {group['name']!r} is not offered in {region} "
                    f"(see GET /v1/providers/azure/regions/{region}/machine-types)"
                )
