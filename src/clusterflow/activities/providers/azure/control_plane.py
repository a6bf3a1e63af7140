"""The AKS managed cluster: its body from the spec, PUT and wait, the ownership check, VERIFY,
control-plane changes on update, and what delete needs to know.

The `clusterflow-cluster-id` tag says whose a cluster is: a same-named cluster without it is
someone else's (deploy fails with CLOUD_CONFLICT; delete leaves it alone).

Update reads `PhaseInput.change`: `kubernetesVersion`, `autoUpgradeChannel`,
`nodeOsUpgradeChannel`, `tags` (and `maintenanceWindow`, refused). VALIDATE checks the catalog's
upgrade path and the cluster's live upgrade profile; CONTROL_PLANE upgrades the control plane
only (pools keep their version), sets upgrade channels and tags.
"""

from __future__ import annotations

import functools

from azure.mgmt.containerservice import models as aks

from clusterflow.activities.providers.azure.agent_pools import pool_profile
from clusterflow.activities.providers.azure.session import AksSession
from clusterflow.activities.providers.azure.spec import (
    OWNER_TAG,
    POOL_NAME,
    aks_block,
    node_groups,
    requested_version,
    system_group,
)
from clusterflow.activities.providers.managed_cluster import OwnedCluster
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import azure as azure_catalog
from clusterflow.catalog import minor_of, version_key
from clusterflow.workflows.contracts import ErrorCode, PhaseInput, PhaseResult


def check_owner(cluster: aks.ManagedCluster, inp: PhaseInput) -> None:
    if (cluster.tags or {}).get(OWNER_TAG) != inp.cluster_id:
        raise ProviderError(
            ErrorCode.CLOUD_CONFLICT,
            f"an AKS cluster named {inp.cluster_name} already exists in the resource group and is not managed "
            f"by cluster {inp.cluster_id}. Remedy: choose another clusterName or delete the existing cluster",
            retryable=False,
        )


def cluster_body(inp: PhaseInput) -> aks.ManagedCluster:
    block = aks_block(inp.spec)
    version = requested_version(inp.spec)
    system = system_group(inp.spec)
    profiles = [aks.ManagedClusterAgentPoolProfile(name=system["name"], **pool_profile(system, "System", None))]
    profiles += [
        aks.ManagedClusterAgentPoolProfile(name=g["name"], **pool_profile(g, "User", None))
        for g in node_groups(inp.spec)
        if g["name"] != system["name"]
    ]
    if block.get("vnetSubnetId"):
        for profile in profiles:
            profile.vnet_subnet_id = block["vnetSubnetId"]
    cluster = aks.ManagedCluster(
        location=inp.region,
        tags={**(block.get("tags") or {}), OWNER_TAG: inp.cluster_id},
        identity=aks.ManagedClusterIdentity(type="SystemAssigned"),
        properties=aks.ManagedClusterProperties(
            dns_prefix=inp.cluster_name,
            kubernetes_version=version,
            agent_pool_profiles=profiles,
            enable_rbac=True,
        ),
    )
    if block.get("networkPlugin"):
        cluster.network_profile = aks.ContainerServiceNetworkProfile(
            network_plugin=block["networkPlugin"], network_plugin_mode=block.get("networkPluginMode")
        )
    if block.get("privateCluster") or block.get("authorizedIPRanges"):
        cluster.api_server_access_profile = aks.ManagedClusterAPIServerAccessProfile(
            enable_private_cluster=bool(block.get("privateCluster")),
            authorized_ip_ranges=list(block.get("authorizedIPRanges") or []) or None,
        )
    if block.get("enableOidcIssuer") or block.get("enableWorkloadIdentity"):
        cluster.oidc_issuer_profile = aks.ManagedClusterOIDCIssuerProfile(enabled=True)
    if block.get("enableWorkloadIdentity"):
        cluster.security_profile = aks.ManagedClusterSecurityProfile(
            workload_identity=aks.ManagedClusterSecurityProfileWorkloadIdentity(enabled=True)
        )
    if block.get("autoUpgradeChannel") or block.get("nodeOsUpgradeChannel"):
        cluster.auto_upgrade_profile = aks.ManagedClusterAutoUpgradeProfile(
            upgrade_channel=block.get("autoUpgradeChannel"),
            node_os_upgrade_channel=block.get("nodeOsUpgradeChannel"),
        )
    return cluster


async def put_cluster(inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
    existing = await session.get_cluster()
    verb = "created"
    if existing is not None:
        check_owner(existing, inp)
        existing = await session.wait_settled("control plane")
        verb = "found existing"
    if existing is None or existing.provisioning_state != "Succeeded":
        # Absent, or Failed/Canceled after an earlier attempt: PUT converges it.
        await session.run(
            f"create managed cluster {inp.cluster_name}",
            session.client.managed_clusters.begin_create_or_update,
            session.group,
            inp.cluster_name,
            cluster_body(inp),
        )
    cluster = await session.wait_settled("control plane")
    if cluster.provisioning_state != "Succeeded":
        raise ProviderError(
            ErrorCode.CLOUD_OPERATION_FAILED,
            f"managed cluster {inp.cluster_name} is {cluster.provisioning_state}",
            retryable=True,
        )
    await reporter.event(
        "cluster",
        f"{verb} AKS cluster {inp.cluster_name} ({cluster.current_kubernetes_version})",
        fraction=1.0,
    )
    return PhaseResult(inp.phase, resources=[f"aks-cluster/{cluster.id}"])


async def verify(inp: PhaseInput, session: AksSession) -> PhaseResult:
    cluster = await session.wait_settled("verify")
    if cluster.provisioning_state != "Succeeded":
        raise ProviderError(
            ErrorCode.PHASE_FAILED,
            f"managed cluster {inp.cluster_name} is {cluster.provisioning_state}",
            retryable=True,
        )
    credentials = await session.call(
        "list cluster user credentials",
        session.client.managed_clusters.list_cluster_user_credentials,
        session.group,
        inp.cluster_name,
    )
    if not credentials.kubeconfigs:
        raise ProviderError(ErrorCode.PHASE_FAILED, "AKS returned no user kubeconfig yet", retryable=True)
    version = cluster.current_kubernetes_version or cluster.kubernetes_version or ""
    return PhaseResult(
        inp.phase,
        outputs={
            "cluster": {
                "kubernetesVersion": minor_of(version),
                "currentKubernetesVersion": version,
                "endpoint": f"https://{cluster.fqdn}:443",
                "resourceId": cluster.id,
            }
        },
    )


async def validate_change(inp: PhaseInput, session: AksSession, cluster: aks.ManagedCluster) -> None:
    change = inp.change
    versions = azure_catalog.CATALOG.kubernetes["aks"]

    def invalid(message: str) -> ProviderError:
        return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)

    if change.get("maintenanceWindow"):
        raise invalid("maintenanceWindow is not supported for AKS clusters yet")
    target = change.get("kubernetesVersion")
    current = cluster.current_kubernetes_version or cluster.kubernetes_version or ""
    if target and minor_of(target) != minor_of(current):
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
            raise invalid(f"AKS offers no upgrade of this cluster to {target} (offered: {', '.join(offered)})")
    for group in change.get("nodeGroups") or []:
        if group.get("changeType") not in ("ADD", "RESIZE", "REMOVE", "UPGRADE"):
            raise invalid(f"node group {group.get('name')!r}: unknown changeType {group.get('changeType')!r}")
        if group.get("changeType") == "ADD" and not POOL_NAME.match(group["name"]):
            raise invalid(f"node group name {group['name']!r} is not a valid AKS agent pool name")


async def update_control_plane(inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
    change = inp.change
    cluster = await session.wait_settled("control plane")
    done: list[str] = []
    target = change.get("kubernetesVersion")
    current = cluster.current_kubernetes_version or cluster.kubernetes_version or ""
    if target and minor_of(current) != minor_of(target):
        cluster.kubernetes_version = target
        done.append(f"control plane upgraded to {target}")
    for profile in cluster.agent_pool_profiles or []:
        # Pools keep their version; node-group upgrades are their own step.
        profile.orchestrator_version = profile.current_orchestrator_version or profile.orchestrator_version
    upgrade_channel, os_channel = change.get("autoUpgradeChannel"), change.get("nodeOsUpgradeChannel")
    if upgrade_channel or os_channel:
        auto = cluster.auto_upgrade_profile or aks.ManagedClusterAutoUpgradeProfile()
        if (upgrade_channel and auto.upgrade_channel != upgrade_channel) or (
            os_channel and auto.node_os_upgrade_channel != os_channel
        ):
            auto.upgrade_channel = upgrade_channel or auto.upgrade_channel
            auto.node_os_upgrade_channel = os_channel or auto.node_os_upgrade_channel
            cluster.auto_upgrade_profile = auto
            done.append("upgrade channels set")
    tags = change.get("tags")
    if tags is not None and {**tags, OWNER_TAG: inp.cluster_id} != (cluster.tags or {}):
        cluster.tags = {**tags, OWNER_TAG: inp.cluster_id}
        done.append("tags set")
    if done:
        await session.run(
            f"update managed cluster {inp.cluster_name}",
            session.client.managed_clusters.begin_create_or_update,
            session.group,
            inp.cluster_name,
            cluster,
        )
    await reporter.event("control-plane", "; ".join(done) or "control plane already as requested", fraction=1.0)
    return PhaseResult(inp.phase, outputs={"controlPlane": done})


async def owned_cluster(session: AksSession) -> OwnedCluster | None:
    """The managed cluster as delete sees it (`managed_cluster.delete_owned_cluster`)."""
    cluster = await session.get_cluster()
    if cluster is None:
        return None
    return OwnedCluster(
        owner=(cluster.tags or {}).get(OWNER_TAG),
        delete=functools.partial(
            session.run,
            f"delete managed cluster {session.cluster}",
            session.client.managed_clusters.begin_delete,
            session.group,
            session.cluster,
        ),
        resource=f"aks-cluster/{cluster.id}",
    )
