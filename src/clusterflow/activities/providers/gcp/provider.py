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

Deploy and delete read the typed definition (`PhaseInput.cluster`); deploy VALIDATE first runs
`check_deploy_spec`, the check the API runs for a deploy and its dry run.

Update phases read the typed change (`PhaseInput.change`): VALIDATE refuses what GKE would
(`update_checks`); CONTROL_PLANE (`control_plane`) and NODE_GROUPS (`node_pools`) apply it, and
on rollback apply the plan's inverse the same way; ADDONS follow the cluster.

Delete phases: CONTROL_PLANE deletes the cluster (its node pools go with it); the others have
nothing of their own. A missing cluster is success (`managed_cluster.delete_owned_cluster`).
"""

from __future__ import annotations

from google.cloud import container_v1

from clusterflow.activities.providers.gcp.clients import gcp_credentials, make_client
from clusterflow.activities.providers.gcp.control_plane import (
    check_owner,
    create_cluster,
    owned_cluster,
    update_control_plane,
    verify,
)
from clusterflow.activities.providers.gcp.node_pools import ensure_node_pools, update_node_groups
from clusterflow.activities.providers.gcp.session import GkeSession
from clusterflow.activities.providers.gcp.spec import gke_settings, owner_label, validate_spec
from clusterflow.activities.providers.gcp.update_checks import validate_change
from clusterflow.activities.providers.managed_cluster import ManagedClusterProvider, ManagedSteps
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult
from clusterflow.records import federated_accounts
from clusterflow.records.catalog import current_catalog
from clusterflow.records.db import DbPool
from clusterflow.settings import Settings

GkeBinding = tuple[container_v1.ClusterManagerClient, str | None]


class GcpProvider(ManagedClusterProvider[GkeBinding, GkeSession, container_v1.Cluster]):
    service = "GKE"
    missing_code = ErrorCode.CLOUD_REJECTED
    managed_addons = "kube-dns, kube-proxy and metrics-server are managed by GKE"
    update_allowed = "update is allowed by the GKE catalog"
    steps = ManagedSteps(GkeSession.get_cluster, check_owner, create_cluster, ensure_node_pools, verify, owned_cluster)

    def __init__(self, pool: DbPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        # One client per credential source (settings, or each connected account), reused.
        self._clients: dict[str, container_v1.ClusterManagerClient] = {}

    async def prepare(self, inp: PhaseInput) -> GkeBinding:
        return await self.bind(inp.cluster_id)

    async def bind(self, cluster_id: str) -> tuple[container_v1.ClusterManagerClient, str | None]:
        """The client for this cluster, and the connected account's project if there is one."""
        account = await federated_accounts.connected_for_cluster(self.pool, cluster_id, "gcp")
        key = account.id if account else ""
        if key not in self._clients:
            credentials = None
            if account is not None:
                credentials = gcp_credentials(
                    self.settings, account.organization_id, account.id, dict(account.identity)
                )
            self._clients[key] = make_client(self.settings, credentials)
        return self._clients[key], (account.identity["projectId"] if account else None)

    def project(self, cluster: ClusterDefinition, account_project: str | None) -> str:
        """The cluster's project: the spec's, else the connected account's, else the default."""
        project = gke_settings(cluster).project_id or account_project or self.settings.gcp_default_project
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
            self.project(inp.cluster, account_project),
            inp.region,
            inp.cluster_name,
            self.settings.gcp_poll_seconds,
        )

    # --- the steps of the phases (managed_cluster.ManagedClusterProvider) ---------------------

    async def _checked_session(self, inp: PhaseInput, reporter: PhaseReporter, bound: GkeBinding) -> GkeSession:
        validate_spec(inp.spec, await current_catalog(self.pool))
        await reporter.event("spec", "spec matches the GKE catalog", fraction=0.5)
        return self._session(inp, reporter, bound)

    def _network(self, inp: PhaseInput) -> str:
        network = gke_settings(inp.cluster).network_id or "default"
        return f"GKE builds VPC-native networking in network {network}"

    async def _validate_change(self, inp: PhaseInput, session: GkeSession, cluster: container_v1.Cluster) -> None:
        validate_change(inp.change, cluster, inp.region, (await current_catalog(self.pool)).providers["gcp"])

    async def _update_control_plane(
        self, inp: PhaseInput, session: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
    ) -> PhaseResult:
        return await update_control_plane(inp, session, await self._settled(inp, session, cluster), reporter)

    async def _update_node_groups(
        self, inp: PhaseInput, session: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
    ) -> PhaseResult:
        return await update_node_groups(inp, session, await self._settled(inp, session, cluster), reporter)

    @staticmethod
    async def _settled(inp: PhaseInput, session: GkeSession, cluster: container_v1.Cluster) -> container_v1.Cluster:
        """The cluster once an operation still running (from a cancelled or lost attempt) ended."""
        settled = await session.settled_cluster(f"{inp.phase} {inp.stage}".strip())
        return settled if settled is not None else cluster

    def _owner(self, inp: PhaseInput) -> str:
        return owner_label(inp.cluster_id)
