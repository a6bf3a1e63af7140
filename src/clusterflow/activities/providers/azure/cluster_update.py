"""What an update does to an AKS cluster: VALIDATE refuses what AKS would refuse, CONTROL_PLANE
upgrades the control plane and applies tags and `UpdateChange.aks`.

VALIDATE (before anything changes), from the live cluster: a control-plane downgrade, a skipped
minor, a version the cluster's upgrade profile does not offer; an ADD of a pool name already on
the cloud or not a valid pool name, or of a VM size or zone the region does not offer; a RESIZE
or UPGRADE of a pool AKS does not have; a pool upgraded above (or below) the control plane; a
REMOVE of the cluster's last System pool or a System pool sized to zero; authorized IP ranges
that are not CIDRs, or on a private cluster. All are `INVALID_SPEC`.

CONTROL_PLANE (also its rollback pass, with the inverse): the control plane moves to the target
version (pools keep theirs: node-group upgrades are NODE_GROUPS' work); the managed cluster's
tags become exactly `change.tags` plus the owner tag; `change.aks` sets the auto-upgrade and
node-OS upgrade channels and the API server's authorized IP ranges (an empty tuple clears
them). The result reports the control plane's version as AKS states it afterwards.
"""

from __future__ import annotations

import ipaddress

from azure.mgmt.containerservice import models as aks

from clusterflow.activities.providers.azure.agent_pools import control_version, pool_version
from clusterflow.activities.providers.azure.session import AksSession
from clusterflow.activities.providers.azure.spec import OWNER_TAG, POOL_NAME, SYSTEM, invalid
from clusterflow.activities.providers.phases import PhaseReporter
from clusterflow.catalog import ProviderCatalog, minor_of, version_key
from clusterflow.catalog import azure as azure_catalog
from clusterflow.contracts.changes import AksChange, ChangeKind, NodeGroupChange
from clusterflow.contracts.phase_activity import ClusterFacts, PhaseInput, PhaseResult


async def _check_version(
    inp: PhaseInput, session: AksSession, current: str, target: str, catalog: ProviderCatalog
) -> None:
    versions = catalog.versions("aks", inp.region) or catalog.kubernetes["aks"]
    if minor_of(target) == minor_of(current):
        return
    if version_key(minor_of(target)) < version_key(minor_of(current)):
        raise invalid(f"AKS cannot downgrade the control plane from {current} to {target}")
    if versions.upgrade_path(current, target) is None:
        raise invalid(
            f"no upgrade path from {minor_of(current)} to {target}: the control plane moves one minor "
            "version at a time (see GET /v1/kubernetes-versions?cloudProvider=azure&provisionerType=aks)"
        )
    profile = await session.call(
        "read upgrade profile",
        session.client.managed_clusters.get_upgrade_profile,
        session.group,
        inp.cluster_name,
    )
    offered = [u.kubernetes_version for u in profile.control_plane_profile.upgrades or []]
    if not any(minor_of(v) == minor_of(target) for v in offered):
        raise invalid(f"AKS offers no upgrade of this cluster to {target} (offered: {', '.join(offered) or 'none'})")


def _check_group_change(
    change: NodeGroupChange, pools: dict[str, aks.AgentPool], control: str, region: str, catalog: ProviderCatalog
) -> None:
    name = change.name
    pool = pools.get(name)
    if change.kind == ChangeKind.ADD:
        group = change.new_group
        if not POOL_NAME.match(name):
            raise invalid(
                f"node group name {name!r} is not a valid AKS agent pool name "
                "(lowercase letters and digits, starting with a letter, at most 12 characters)"
            )
        if pool is not None:
            raise invalid(f"node group {name}: an agent pool named {name} already exists on the AKS cluster")
        if len(group.machine_types) != 1:
            raise invalid(f"node group {name}: an AKS agent pool takes exactly one VM size")
        offered = {m.name for m in catalog.machine_types_in(region)}
        if group.machine_types[0] not in offered:
            raise invalid(f"node group {name}: VM size {group.machine_types[0]!r} is not offered in {region}")
        zones = catalog.region(region)
        for zone in group.zones:
            if zones is None or f"{region}-{azure_catalog.aks_zone(zone)}" not in zones.zones:
                raise invalid(f"node group {name}: zone {zone} is not in region {region}")
        return
    if change.kind == ChangeKind.REMOVE:
        if (
            pool is not None
            and pool.mode == SYSTEM
            and not any(p.mode == SYSTEM for n, p in pools.items() if n != name)
        ):
            raise invalid(f"node group {name} is the cluster's only System agent pool: AKS cannot remove it")
        return
    if pool is None:
        raise invalid(f"node group {name}: AKS has no agent pool named {name} (add it instead)")
    if change.kind == ChangeKind.RESIZE and pool.mode == SYSTEM and change.new_size.min_nodes < 1:
        raise invalid(f"node group {name} is a System agent pool: its minimum size must be at least 1")
    if change.kind == ChangeKind.UPGRADE:
        target, current = minor_of(change.target_version), minor_of(pool_version(pool))
        if version_key(target) > version_key(minor_of(control)):
            raise invalid(f"node group {name}: version {target} is newer than the control plane's {minor_of(control)}")
        if version_key(target) < version_key(current):
            raise invalid(f"node group {name}: AKS cannot downgrade agent pool {name} from {current} to {target}")


def _check_ranges(settings: AksChange, cluster: aks.ManagedCluster) -> None:
    ranges = settings.authorized_ip_ranges
    if not ranges:
        return
    access = cluster.api_server_access_profile
    if access is not None and access.enable_private_cluster:
        raise invalid("aks.authorizedIPRanges: a private AKS cluster's API server has no public endpoint to restrict")
    for cidr in ranges:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as err:
            raise invalid(f"aks.authorizedIPRanges: {cidr!r} is not a CIDR range") from err


async def validate_change(
    inp: PhaseInput, session: AksSession, cluster: aks.ManagedCluster, catalog: ProviderCatalog
) -> None:
    """Refuse what AKS would refuse part-way, judged by `catalog` (the stored AKS catalog the API
    planned the update with) and the cluster's live upgrade profile."""
    change = inp.change
    current = control_version(cluster)
    target = change.target_version
    if target:
        await _check_version(inp, session, current, target, catalog)
    pools = {
        p.name: p
        for p in await session.call(
            "list agent pools", session.client.agent_pools.list, session.group, inp.cluster_name
        )
        if p.name
    }
    control_after = target or current
    for group_change in change.node_groups:
        _check_group_change(group_change, pools, control_after, inp.region, catalog)
    if change.aks is not None:
        _check_ranges(change.aks, cluster)


def _apply_settings(cluster: aks.ManagedCluster, settings: AksChange) -> list[str]:
    done: list[str] = []
    auto = cluster.auto_upgrade_profile or aks.ManagedClusterAutoUpgradeProfile()
    channels = (settings.auto_upgrade_channel, settings.node_os_upgrade_channel)
    if (settings.auto_upgrade_channel and auto.upgrade_channel != settings.auto_upgrade_channel) or (
        settings.node_os_upgrade_channel and auto.node_os_upgrade_channel != settings.node_os_upgrade_channel
    ):
        auto.upgrade_channel = channels[0] or auto.upgrade_channel
        auto.node_os_upgrade_channel = channels[1] or auto.node_os_upgrade_channel
        cluster.auto_upgrade_profile = auto
        done.append("upgrade channels set")
    if settings.authorized_ip_ranges is not None:
        access = cluster.api_server_access_profile or aks.ManagedClusterAPIServerAccessProfile()
        wanted = list(settings.authorized_ip_ranges)
        if sorted(access.authorized_ip_ranges or []) != sorted(wanted):
            access.authorized_ip_ranges = wanted
            cluster.api_server_access_profile = access
            done.append("API server authorized IP ranges set" if wanted else "API server authorized IP ranges cleared")
    return done


async def update_control_plane(inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
    change = inp.change
    cluster = await session.wait_settled("control plane")
    done: list[str] = []
    target = change.target_version
    if target and minor_of(control_version(cluster)) != minor_of(target):
        cluster.kubernetes_version = minor_of(target)
        done.append(f"control plane upgraded to {minor_of(target)}")
    for profile in cluster.agent_pool_profiles or []:
        # Pools keep their version; node-group upgrades are their own step.
        profile.orchestrator_version = minor_of(
            profile.current_orchestrator_version or profile.orchestrator_version or control_version(cluster)
        )
    if change.aks is not None:
        done += _apply_settings(cluster, change.aks)
    if change.tags is not None:
        wanted = {**change.tags, OWNER_TAG: inp.cluster_id}
        if wanted != (cluster.tags or {}):
            cluster.tags = wanted
            done.append("tags set")
    if done:
        await session.run(
            f"update managed cluster {inp.cluster_name}",
            session.client.managed_clusters.begin_create_or_update,
            session.group,
            inp.cluster_name,
            cluster,
        )
    settled = await session.wait_settled("control plane")
    reached = minor_of(control_version(settled))
    await reporter.event(
        "control-plane",
        "; ".join(done) + f" (control plane on {reached})"
        if done
        else f"control plane already as requested ({reached})",
        fraction=1.0,
    )
    return PhaseResult(inp.phase, facts=ClusterFacts(kubernetes_version=reached))
