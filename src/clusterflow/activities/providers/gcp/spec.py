"""What a GKE cluster is asked to be: the typed definition's `gke` settings, the version a
deploy creates, the owner label, and deploy VALIDATE's spec check.

Pure functions (no client). The spec check is `catalog.spec_checks.check_deploy_spec`, the same
function the API runs for a deploy and its dry run, so VALIDATE refuses exactly what a dry run
refuses, with a permanent INVALID_SPEC naming every field at fault. The `clusterflow-cluster-id`
resource label (`OWNER_LABEL`) says whose a GKE cluster is.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.catalog import gcp as gcp_catalog
from clusterflow.catalog.model import Catalog
from clusterflow.catalog.spec_checks import check_deploy_spec
from clusterflow.contracts.cluster import ClusterDefinition, GkeSettings
from clusterflow.contracts.operations import ErrorCode

OWNER_LABEL = "clusterflow-cluster-id"


def gke_settings(cluster: ClusterDefinition) -> GkeSettings:
    """The cluster's `provisioner.gke` block, defaults when it has none."""
    return cluster.gke or GkeSettings()


def owner_label(cluster_id: str) -> str:
    return cluster_id.lower()


def requested_version(cluster: ClusterDefinition) -> str:
    """The version a deploy creates: the one named, else the release channel's default, else GKE's."""
    gke = gke_settings(cluster)
    versions = gcp_catalog.CATALOG.kubernetes["gke"]
    if gke.kubernetes_version:
        return gke.kubernetes_version
    if gke.release_channel and gke.release_channel in versions.channels:
        return versions.channels[gke.release_channel].default_version
    return versions.default_version


def validate_spec(spec: dict[str, Any], catalog: Catalog) -> None:
    """The deploy spec (as JSON) against the catalog, as the API checks it; raises a permanent
    INVALID_SPEC listing every problem by field."""
    problems = check_deploy_spec(spec, catalog)
    if problems:
        raise ProviderError(
            ErrorCode.INVALID_SPEC,
            "; ".join(f"{p.field}: {p.message}" for p in problems),
            retryable=False,
        )
