"""The AKS managed cluster: its body from the typed definition, PUT and wait, the ownership check,
VERIFY, and what delete needs to know.

The `clusterflow-cluster-id` tag says whose a cluster is: a same-named cluster without it is
someone else's (deploy fails with CLOUD_CONFLICT; delete leaves it alone).

Every cluster clusterflow creates has Microsoft Entra ID integration (`aadProfile.managed`,
Azure RBAC for Kubernetes authorization) and no local accounts: its user kubeconfig
authenticates with Entra ID tokens, which expire, so `POST /v1/clusters/{id}/kubeconfig` can
issue one; no static admin credential exists to leak.

What an update changes on the managed cluster is in `cluster_update`.
"""

from __future__ import annotations

import functools

from azure.mgmt.containerservice import models as aks

from clusterflow.activities.providers.azure.agent_pools import control_version, pool_profile
from clusterflow.activities.providers.azure.session import AksSession
from clusterflow.activities.providers.azure.spec import OWNER_TAG, aks_settings, pool_groups, requested_version
from clusterflow.activities.providers.managed_cluster import OwnedCluster
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import minor_of
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import ClusterFacts, PhaseInput, PhaseResult


def check_owner(cluster: aks.ManagedCluster, inp: PhaseInput) -> None:
    if (cluster.tags or {}).get(OWNER_TAG) != inp.cluster_id:
        raise ProviderError(
            ErrorCode.CLOUD_CONFLICT,
            f"an AKS cluster named {inp.cluster_name} already exists in the resource group and is not managed "
            f"by cluster {inp.cluster_id}. Remedy: choose another clusterName or delete the existing cluster",
            retryable=False,
        )


def cluster_body(inp: PhaseInput) -> aks.ManagedCluster:
    definition = inp.cluster
    settings = aks_settings(definition)
    profiles = [
        aks.ManagedClusterAgentPoolProfile(name=group.name, **pool_profile(group, mode, None))
        for group, mode in pool_groups(definition)
    ]
    if settings.vnet_subnet_id:
        for profile in profiles:
            profile.vnet_subnet_id = settings.vnet_subnet_id
    cluster = aks.ManagedCluster(
        location=inp.region,
        tags={**settings.tags, OWNER_TAG: inp.cluster_id},
        identity=aks.ManagedClusterIdentity(type="SystemAssigned"),
        properties=aks.ManagedClusterProperties(
            dns_prefix=inp.cluster_name,
            kubernetes_version=requested_version(definition),
            agent_pool_profiles=profiles,
            enable_rbac=True,
            aad_profile=aks.ManagedClusterAADProfile(managed=True, enable_azure_rbac=True),
            disable_local_accounts=True,
        ),
    )
    if settings.network_plugin:
        cluster.network_profile = aks.ContainerServiceNetworkProfile(
            network_plugin=settings.network_plugin, network_plugin_mode=settings.network_plugin_mode
        )
    if settings.private_cluster or settings.authorized_ip_ranges:
        cluster.api_server_access_profile = aks.ManagedClusterAPIServerAccessProfile(
            enable_private_cluster=settings.private_cluster,
            authorized_ip_ranges=list(settings.authorized_ip_ranges) or None,
        )
    if settings.enable_oidc_issuer or settings.enable_workload_identity:
        cluster.oidc_issuer_profile = aks.ManagedClusterOIDCIssuerProfile(enabled=True)
    if settings.enable_workload_identity:
        cluster.security_profile = aks.ManagedClusterSecurityProfile(
            workload_identity=aks.ManagedClusterSecurityProfileWorkloadIdentity(enabled=True)
        )
    if settings.auto_upgrade_channel or settings.node_os_upgrade_channel:
        cluster.auto_upgrade_profile = aks.ManagedClusterAutoUpgradeProfile(
            upgrade_channel=settings.auto_upgrade_channel,
            node_os_upgrade_channel=settings.node_os_upgrade_channel,
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
    version = control_version(cluster)
    return PhaseResult(
        inp.phase,
        facts=ClusterFacts(
            kubernetes_version=minor_of(version),
            patch_version=version,
            endpoint=f"https://{cluster.fqdn}:443",
            cloud_resource_id=cluster.id,
        ),
    )


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
