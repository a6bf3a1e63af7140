"""Update VALIDATE on GKE: the typed change (`UpdateChange`) against the live cluster, refusing
with a permanent INVALID_SPEC what GKE would refuse part-way through the update.

- The master moves up one minor version at a time, never down, to a version GKE offers (the
  planner checked the record's version; this checks the live one, which may have moved).
- A node pool never runs a newer minor than the master will.
- An ADD names a pool the cluster does not have yet (GKE answers ALREADY_EXISTS), with one
  machine type offered in the cluster's region and zones of that region; RESIZE and UPGRADE
  name pools that exist. An Autopilot cluster has no node pools to change.
- The GKE settings: a known release channel that offers the version the master will run, a
  maintenance window GKE accepts, valid authorized networks (`cluster_settings`).
"""

from __future__ import annotations

from google.cloud import container_v1

from clusterflow.activities.providers.gcp.cluster_settings import networks_problem, window_problem
from clusterflow.activities.providers.phases import ProviderError
from clusterflow.catalog import KubernetesVersions, ProviderCatalog, minor_of, version_key
from clusterflow.contracts.changes import ChangeKind, NodeGroupChange, UpdateChange
from clusterflow.contracts.cluster import NodeGroupSpec
from clusterflow.contracts.operations import ErrorCode

_VERSIONS = "GET /v1/kubernetes-versions?cloudProvider=gcp&provisionerType=gke"


def _invalid(message: str) -> ProviderError:
    return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)


def validate_change(change: UpdateChange, cluster: container_v1.Cluster, region: str, catalog: ProviderCatalog) -> None:
    """Raise INVALID_SPEC for the first thing in `change` GKE would refuse on `cluster`, judged
    by `catalog` (the stored GKE catalog the API planned the update with)."""
    versions = catalog.versions("gke", region) or catalog.kubernetes["gke"]
    master = minor_of(cluster.current_master_version)
    after = _check_version(change, master, versions)
    pools = {p.name for p in cluster.node_pools}
    if change.node_groups and cluster.autopilot.enabled:
        raise _invalid("node groups cannot be changed on an Autopilot cluster: GKE provisions its nodes itself")
    for node_change in change.node_groups:
        _check_node_group(node_change, pools, after, region, catalog)
    _check_channel(change, cluster, after, versions)
    if change.gke is not None:
        if change.gke.maintenance_window is not None:
            problem = window_problem(change.gke.maintenance_window)
            if problem:
                raise _invalid(f"gke.{problem}")
        if change.gke.authorized_networks is not None:
            problem = networks_problem(change.gke.authorized_networks)
            if problem:
                raise _invalid(f"gke.{problem}")


def _check_channel(
    change: UpdateChange, cluster: container_v1.Cluster, after: str, versions: KubernetesVersions
) -> None:
    """The release channel the cluster is (or will be) on must offer the master's version."""
    wanted = change.gke.release_channel if change.gke is not None else None
    if wanted is not None and wanted not in versions.channels:
        raise _invalid(f"gke.releaseChannel {wanted} is unknown (offered: {', '.join(versions.channels)})")
    live = str(container_v1.ReleaseChannel.Channel(cluster.release_channel.channel).name)
    channel = wanted or (live if live in versions.channels else None)
    if channel is None:
        return
    offered = versions.channels[channel].valid_versions
    if after not in offered:
        where = "gke.releaseChannel" if wanted else "the cluster's release channel"
        raise _invalid(
            f"{where} {channel} does not offer {after}, the version the master would run "
            f"(offered: {', '.join(offered)}); GKE refuses it"
        )


def _check_version(change: UpdateChange, master: str, versions: KubernetesVersions) -> str:
    """The minor the master runs after the update; refuses a downgrade or a skipped minor."""
    target = change.target_version
    if not target or minor_of(target) == master:
        return master
    if version_key(minor_of(target)) < version_key(master):
        raise _invalid(f"GKE cannot downgrade the control plane from {master} to {target}")
    if minor_of(target) not in versions.supported_versions:
        raise _invalid(f"kubernetesVersion {target} is not offered by GKE (see {_VERSIONS})")
    if versions.upgrade_path(master, target) is None:
        raise _invalid(
            f"no upgrade path from {master} to {target}: the control plane moves one minor version at a time "
            f"(see {_VERSIONS})"
        )
    return minor_of(target)


def _check_node_group(
    change: NodeGroupChange, pools: set[str], master_after: str, region: str, catalog: ProviderCatalog
) -> None:
    name = change.name
    if change.kind == ChangeKind.ADD:
        if name in pools:
            raise _invalid(f"node group {name} cannot be added: the GKE cluster already has a node pool named {name}")
        _check_new_group(change.new_group, region, catalog)
    elif change.kind in (ChangeKind.RESIZE, ChangeKind.UPGRADE) and name not in pools:
        raise _invalid(f"node group {name} does not exist on the GKE cluster: cannot {change.describe()}")
    if change.kind == ChangeKind.UPGRADE and version_key(minor_of(change.target_version)) > version_key(master_after):
        raise _invalid(
            f"node group {name} cannot move to {change.target_version}: the master runs {master_after} and GKE "
            "refuses nodes newer than the master"
        )


def _check_new_group(group: NodeGroupSpec, region: str, catalog: ProviderCatalog) -> None:
    if len(group.machine_types) > 1:
        raise _invalid(
            f"node group {group.name}: GKE node pools take one machine type, got {', '.join(group.machine_types)}"
        )
    zones = {z for r in catalog.regions if r.id == region for z in r.zones}
    for zone in group.zones:
        if zone not in zones:
            raise _invalid(f"zone {zone} of node group {group.name!r} is not in region {region}")
    for machine in group.machine_types:
        where = [(zone, catalog.machine_types_in(region, zone)) for zone in group.zones] or [
            (region, catalog.machine_types_in(region))
        ]
        for place, offered in where:
            if machine not in {m.name for m in offered}:
                raise _invalid(
                    f"machine type {machine!r} of node group {group.name!r} is not offered in {place} "
                    f"(see GET /v1/providers/gcp/regions/{region}/machine-types)"
                )
