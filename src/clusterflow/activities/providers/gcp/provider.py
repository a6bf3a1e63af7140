"""The `gcp` provider: GKE clusters through `google-cloud-container` (REST transport).

`GcpProvider` resolves, before each phase (`prepare`), which credentials the cluster's phases
act with (a connected account's federated service account, else the settings'), and dispatches
each phase to the concept modules: `control_plane` (the cluster), `node_pools`, with `spec`
(the catalog check), `session` (calls, operations, waiting) and `errors` (classification)
beneath them. Registered by `adapter.phase_activities("gcp", ...)`.

Deploy phases: VALIDATE (spec against the catalog, then a read to prove credentials and
permission), NETWORK (GKE builds VPC-native networking with the cluster; nothing to create),
CONTROL_PLANE (create the cluster with its node pools), NODE_GROUPS (create any pool still
missing, wait for all to run), ADDONS (GKE-managed; nothing to install), VERIFY.

Update phases read `PhaseInput.change` (see `control_plane` and `node_pools` for the fields):
VALIDATE checks the change against the catalog and the live cluster; CONTROL_PLANE and
NODE_GROUPS apply it; ADDONS follow the cluster.

Delete phases: CONTROL_PLANE deletes the cluster (its node pools go with it); the others have
nothing of their own. A missing cluster is success (`managed_cluster.delete_owned_cluster`).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from google.cloud import container_v1

from clusterflow.activities.providers.gcp.clients import gcp_credentials, make_client
from clusterflow.activities.providers.gcp.control_plane import (
    check_owner,
    create_cluster,
    owned_cluster,
    update_control_plane,
    validate_change,
    verify,
)
from clusterflow.activities.providers.gcp.node_pools import ensure_node_pools, update_node_groups
from clusterflow.activities.providers.gcp.session import GkeSession
from clusterflow.activities.providers.gcp.spec import gke_block, owner_label, validate_spec
from clusterflow.activities.providers.managed_cluster import ManagedClusterProvider, ManagedSteps
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.records import federated_accounts
from clusterflow.settings import Settings
from clusterflow.workflows.contracts import ErrorCode, PhaseInput, PhaseResult

GkeBinding = tuple[container_v1.ClusterManagerClient, str | None]


class GcpProvider(ManagedClusterProvider[GkeBinding, GkeSession, container_v1.Cluster]):
    service = "GKE"
    missing_code = ErrorCode.CLOUD_REJECTED
    managed_addons = "kube-dns, kube-proxy and metrics-server are managed by GKE"
    update_allowed = "update is allowed by the GKE catalog"
    steps = ManagedSteps(GkeSession.get_cluster, check_owner, create_cluster, ensure_node_pools, verify, owned_cluster)

    def __init__(self, pool: asyncpg.Pool[Any], settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        # One client per credential source (settings, or each connected account), reused.
        self._clients: dict[str, container_v1.ClusterManagerClient] = {}

    async def prepare(self, inp: PhaseInput) -> GkeBinding:
        return await self.bind(inp.cluster_id)

    async def bind(self, cluster_id: str) -> tuple[container_v1.ClusterManagerClient, str | None]:
        """The client for this cluster, and the connected account's project if there is one."""
        account = await federated_accounts.connected_for_cluster(self.pool, cluster_id, "gcp")
        key = account["id"] if account else ""
        if key not in self._clients:
            credentials = None
            if account is not None:
                credentials = gcp_credentials(
                    self.settings, account["organization_id"], account["id"], dict(account["identity"])
                )
            self._clients[key] = make_client(self.settings, credentials)
        return self._clients[key], (account["identity"]["projectId"] if account else None)

    def project(self, spec: dict[str, Any], account_project: str | None) -> str:
        return self._project(spec, account_project)

    def _project(self, spec: dict[str, Any], account_project: str | None) -> str:
        project = gke_block(spec).get("projectId") or account_project or self.settings.gcp_default_project
        if not project:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                "no GCP project: set provisioner.gke.projectId (or CLUSTERFLOW_GCP_DEFAULT_PROJECT)",
                retryable=False,
            )
        return str(project)

    def _session(
        self, inp: PhaseInput, reporter: PhaseReporter, bound: tuple[container_v1.ClusterManagerClient, str | None]
    ) -> GkeSession:
        client, account_project = bound
        return GkeSession(
            client,
            reporter,
            self._project(inp.spec, account_project),
            inp.region,
            inp.cluster_name,
            self.settings.gcp_poll_seconds,
        )

    # --- the steps of the phases (managed_cluster.ManagedClusterProvider) ---------------------

    async def _checked_session(self, inp: PhaseInput, reporter: PhaseReporter, bound: GkeBinding) -> GkeSession:
        gke = self._session(inp, reporter, bound)
        validate_spec(inp.spec, inp.region)
        await reporter.event("spec", "spec matches the GKE catalog", fraction=0.5)
        return gke

    def _network(self, inp: PhaseInput) -> str:
        network = gke_block(inp.spec).get("networkId") or "default"
        return f"GKE builds VPC-native networking in network {network}"

    async def _validate_change(self, inp: PhaseInput, session: GkeSession, cluster: container_v1.Cluster) -> None:
        validate_change(inp, cluster)

    async def _update_control_plane(
        self, inp: PhaseInput, session: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
    ) -> PhaseResult:
        return await update_control_plane(inp, session, cluster, reporter)

    async def _update_node_groups(
        self, inp: PhaseInput, session: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
    ) -> PhaseResult:
        return await update_node_groups(inp, session, cluster, reporter)

    def _owner(self, inp: PhaseInput) -> str:
        return owner_label(inp.cluster_id)
