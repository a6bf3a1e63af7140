"""The typed cluster as AKS sees it: the system pool, the agent pools, the version, and the deploy
spec check.

The system pool is the definition's control-plane node group when given, else the first
data-plane node group; every other data-plane group is a User pool. Agent pool names follow AKS
rules (`catalog.azure.POOL_NAME`). The `clusterflow-cluster-id` tag (`OWNER_TAG`) says whose a
cluster is.
"""

from __future__ import annotations

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.catalog import azure as azure_catalog
from clusterflow.catalog.model import Catalog
from clusterflow.catalog.spec_checks import check_deploy_spec
from clusterflow.contracts.cluster import AksSettings, ClusterDefinition, NodeGroupSpec
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput

OWNER_TAG = "clusterflow-cluster-id"
POOL_NAME = azure_catalog.POOL_NAME
SYSTEM, USER = "System", "User"


def invalid(message: str) -> ProviderError:
    return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)


def aks_settings(cluster: ClusterDefinition) -> AksSettings:
    return cluster.aks or AksSettings()


def system_group(cluster: ClusterDefinition) -> NodeGroupSpec:
    if cluster.control_plane_group is not None:
        return cluster.control_plane_group
    if not cluster.node_groups:
        raise invalid("an AKS cluster needs at least one node group (its system pool)")
    return cluster.node_groups[0]


def pool_groups(cluster: ClusterDefinition) -> list[tuple[NodeGroupSpec, str]]:
    """Every agent pool the cluster is made of, with its mode: the system pool first."""
    system = system_group(cluster)
    return [(system, SYSTEM), *((g, USER) for g in cluster.node_groups if g.name != system.name)]


def requested_version(cluster: ClusterDefinition) -> str:
    return aks_settings(cluster).kubernetes_version or azure_catalog.CATALOG.kubernetes["aks"].default_version


def check_spec(inp: PhaseInput, catalog: Catalog) -> None:
    """Deploy VALIDATE's first step: the same pure check the API runs for a dry run and a deploy."""
    problems = check_deploy_spec(inp.spec, catalog)
    if problems:
        raise invalid("; ".join(f"{p.field}: {p.message}" for p in problems))
