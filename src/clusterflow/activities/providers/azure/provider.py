"""The `azure` provider: AKS clusters through `azure-identity` and `azure-mgmt-containerservice`.

`AzureProvider` resolves, before each phase (`prepare`), the connected account the cluster's
phases act as (if any), builds the phase's `AksSession` in the right subscription and resource
group, and dispatches each phase to the concept modules: `control_plane` (the managed cluster),
`cluster_update`, `agent_pools`, with `spec` (the typed cluster and the spec check), `session`
(calls, pollers, waiting), `clients` (credentials, endpoints) and `errors` (classification) beneath them. Registered by
`adapter.phase_activities("azure", ...)`.

Every phase reads the typed inputs only: deploy and delete `PhaseInput.cluster` (the
`ClusterDefinition`), update `PhaseInput.change` (the `UpdateChange`).

Deploy phases: VALIDATE (`catalog.spec_checks.check_deploy_spec`, the API's own check, then a
read proving credentials and the name's owner), NETWORK
(AKS builds its managed VNet unless `vnetSubnetId` is given), CONTROL_PLANE (PUT the managed
cluster with its system pool and every node group), NODE_GROUPS (PUT any agent pool still
missing), ADDONS (managed by AKS), VERIFY (state Succeeded and user credentials obtainable).

Update phases: VALIDATE refuses what AKS would, CONTROL_PLANE upgrades the control plane and sets
tags and `change.aks` (`cluster_update`), NODE_GROUPS adds, resizes, removes and upgrades agent
pools (`agent_pools`); a rollback runs the same code with the plan's inverse.

Delete phases: CONTROL_PLANE deletes the managed cluster (agent pools go with it); a missing
cluster is success (`managed_cluster.delete_owned_cluster`).
"""

from __future__ import annotations

from typing import Any

from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice import models as aks

from clusterflow.activities.providers.azure.agent_pools import ensure_pools, update_pools
from clusterflow.activities.providers.azure.clients import azure_credential, make_client, make_credential
from clusterflow.activities.providers.azure.cluster_update import update_control_plane, validate_change
from clusterflow.activities.providers.azure.control_plane import check_owner, owned_cluster, put_cluster, verify
from clusterflow.activities.providers.azure.session import AksSession
from clusterflow.activities.providers.azure.spec import aks_settings, check_spec
from clusterflow.activities.providers.managed_cluster import ManagedClusterProvider, ManagedSteps
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult
from clusterflow.records import federated_accounts
from clusterflow.records.catalog import current_catalog
from clusterflow.records.db import DbPool
from clusterflow.records.federated_accounts import FederatedAccountRow
from clusterflow.settings import Settings


class AzureProvider(ManagedClusterProvider["FederatedAccountRow | None", AksSession, aks.ManagedCluster]):
    service = "AKS"
    missing_code = ErrorCode.CLOUD_NOT_FOUND
    managed_addons = "CoreDNS, kube-proxy and metrics-server are managed by AKS"
    update_allowed = "update is allowed by the AKS catalog and upgrade profile"
    steps = ManagedSteps(AksSession.get_cluster, check_owner, put_cluster, ensure_pools, verify, owned_cluster)

    def __init__(self, pool: DbPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        # Credentials per source ("" = settings, else a connected account), clients per
        # (source, subscription); reused across phases.
        self._credentials: dict[str, Any] = {}
        self._clients: dict[tuple[str, str], ContainerServiceClient] = {}

    async def prepare(self, inp: PhaseInput) -> FederatedAccountRow | None:
        """The connected account the cluster's phases act as, if there is one."""
        return await federated_accounts.connected_for_cluster(self.pool, inp.cluster_id, "azure")

    def client(self, subscription_id: str, account: FederatedAccountRow | None = None) -> ContainerServiceClient:
        source = account.id if account else ""
        if source not in self._credentials:
            self._credentials[source] = (
                azure_credential(self.settings, account.organization_id, account.id, dict(account.identity))
                if account
                else make_credential(self.settings)
            )
        if (source, subscription_id) not in self._clients:
            self._clients[(source, subscription_id)] = make_client(
                self.settings, self._credentials[source], subscription_id
            )
        return self._clients[(source, subscription_id)]

    def _session(self, inp: PhaseInput, reporter: PhaseReporter, account: FederatedAccountRow | None) -> AksSession:
        block = aks_settings(inp.cluster)
        params = dict(account.params) if account else {}
        subscription = (
            block.subscription_id or params.get("subscriptionId") or self.settings.azure_default_subscription_id
        )
        group = block.resource_group or params.get("resourceGroup") or self.settings.azure_default_resource_group
        if not subscription or not group:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                "no Azure subscription or resource group: set provisioner.aks.subscriptionId and resourceGroup "
                "(or CLUSTERFLOW_AZURE_DEFAULT_SUBSCRIPTION_ID / _RESOURCE_GROUP)",
                retryable=False,
            )
        return AksSession(
            self.client(str(subscription), account),
            reporter,
            str(group),
            inp.cluster_name,
            self.settings.azure_poll_seconds,
        )

    # --- the steps of the phases (managed_cluster.ManagedClusterProvider) ---------------------

    async def _checked_session(
        self, inp: PhaseInput, reporter: PhaseReporter, bound: FederatedAccountRow | None
    ) -> AksSession:
        check_spec(inp, await current_catalog(self.pool))
        await reporter.event("spec", "spec matches the AKS catalog", fraction=0.5)
        return self._session(inp, reporter, bound)

    def _network(self, inp: PhaseInput) -> str:
        subnet = aks_settings(inp.cluster).vnet_subnet_id
        return f"using subnet {subnet}" if subnet else "AKS builds a managed virtual network"

    async def _validate_change(self, inp: PhaseInput, session: AksSession, cluster: aks.ManagedCluster) -> None:
        await validate_change(inp, session, cluster, (await current_catalog(self.pool)).providers["azure"])

    async def _update_control_plane(
        self, inp: PhaseInput, session: AksSession, cluster: aks.ManagedCluster, reporter: PhaseReporter
    ) -> PhaseResult:
        return await update_control_plane(inp, session, reporter)  # it reads the settled cluster itself

    async def _update_node_groups(
        self, inp: PhaseInput, session: AksSession, cluster: aks.ManagedCluster, reporter: PhaseReporter
    ) -> PhaseResult:
        return await update_pools(inp, session, reporter)

    def _owner(self, inp: PhaseInput) -> str:
        return inp.cluster_id
