"""The `azure` provider: AKS clusters through `azure-identity` and `azure-mgmt-containerservice`.

Why it is shaped this way:

- ARM's PUT is idempotent: putting the same managed cluster or agent pool again converges on
  the same resource, so a retried phase re-sends the desired state instead of needing a request
  token. Describe before PUT still matters: a resource already Creating/Updating refuses a second
  operation (409 OperationNotAllowed), so we wait for it; one that already matches is left alone.
- Long-running operations are the SDK's pollers (ARM's `Azure-AsyncOperation` protocol, honouring
  `Retry-After`); the activity heartbeats while the poller works in its thread, so cancellation
  and worker loss are noticed.
- The `clusterflow-cluster-id` tag says whose a cluster is: a same-named cluster without it is
  someone else's (deploy fails with CLOUD_CONFLICT; delete leaves it alone).
- SDK retries are off (`retry_total=0`): Temporal's retry policy is the one retry layer, so every
  retry is visible as an event. ARM errors are classified once here: quota, authorization and
  invalid requests are permanent (with a remedy); throttling, 5xx and a busy resource retry.
- Credentials: when the cluster's organization has a CONNECTED Azure account for the cluster's
  name (cloud connect), the phase acts as that account's application through its federated
  credential, in its subscription and resource group; otherwise it uses the settings' service
  principal (or DefaultAzureCredential).
- Endpoints (ARM, Entra ID authority) and a CA bundle come from settings, so the same code runs
  against Azure, sovereign clouds, private endpoints, or the test fake.

Deploy phases: VALIDATE (spec against the catalog, then a read proving credentials), NETWORK
(AKS builds its managed VNet unless `vnetSubnetId` is given), CONTROL_PLANE (PUT the managed
cluster with its system pool and every node group), NODE_GROUPS (PUT any agent pool still
missing), ADDONS (managed by AKS), VERIFY (state Succeeded and user credentials obtainable).

The system pool is the spec's `controlPlane.nodeGroup` when given, else the first data-plane node
group. Agent pool names follow AKS rules (lowercase letters and digits, at most 12 characters).

Update phases read `PhaseInput.change`:
`{"kubernetesVersion": "1.33", "autoUpgradeChannel": "stable", "nodeOsUpgradeChannel":
"NodeImage", "tags": {...}, "nodeGroups": [{"name", "changeType": "ADD" | "RESIZE" | "REMOVE" |
"UPGRADE", "machineTypes", "minNode", "maxNode", "desiredSize", "kubernetesVersion"}]}`.
VALIDATE checks the catalog's upgrade path and the cluster's live upgrade profile; CONTROL_PLANE
upgrades the control plane only (pools keep their version), sets upgrade channels and tags;
NODE_GROUPS applies node-group changes (an UPGRADE without a version follows the control plane).

Delete phases: CONTROL_PLANE deletes the managed cluster (agent pools go with it); a missing
cluster is success.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.core.polling import LROPoller
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice import models as aks
from temporalio import activity

from clusterflow.activities.cloud_connect_gcp_azure import azure_credential
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError, run_phase
from clusterflow.catalog import azure as azure_catalog
from clusterflow.catalog import minor_of, version_key
from clusterflow.records import federated_accounts
from clusterflow.settings import Settings
from clusterflow.workflows.contracts import ErrorCode, Phase, PhaseInput, PhaseResult

T = TypeVar("T")

OWNER_TAG = "clusterflow-cluster-id"
POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_IN_PROGRESS = {"Creating", "Updating", "Upgrading", "Scaling", "Deleting", "Starting", "Stopping"}
_PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
# How many polls a PUT waits for another operation on the cluster before giving up this attempt
# (Temporal then retries it).
_BUSY_POLLS = 240


def aks_block(spec: dict[str, Any]) -> dict[str, Any]:
    return dict((spec.get("provisioner") or {}).get("aks") or {})


def node_groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list((((spec.get("clusterSpec") or {}).get("dataPlane") or {}).get("nodeGroups")) or [])


def system_group(spec: dict[str, Any]) -> dict[str, Any]:
    control = (((spec.get("clusterSpec") or {}).get("controlPlane")) or {}).get("nodeGroup")
    return dict(control or node_groups(spec)[0])


def make_credential(settings: Settings) -> Any:
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    verify = str(settings.azure_ca_bundle) if settings.azure_ca_bundle else True
    authority = settings.azure_authority_host
    if settings.azure_client_secret is not None and settings.azure_tenant_id and settings.azure_client_id:
        return ClientSecretCredential(
            settings.azure_tenant_id,
            settings.azure_client_id,
            settings.azure_client_secret.get_secret_value(),
            authority=authority,
            disable_instance_discovery=authority.rstrip("/") != _PUBLIC_AUTHORITY,
            connection_verify=verify,
        )
    return DefaultAzureCredential(authority=authority)


def make_client(settings: Settings, credential: Any, subscription_id: str) -> ContainerServiceClient:
    endpoint = settings.azure_arm_endpoint.rstrip("/")
    return ContainerServiceClient(
        credential,
        subscription_id,
        base_url=endpoint,
        credential_scopes=[f"{endpoint}/.default"],
        connection_verify=str(settings.azure_ca_bundle) if settings.azure_ca_bundle else True,
        retry_total=0,
        polling_interval=settings.azure_poll_seconds,
    )


def classify_azure_error(err: Exception, what: str) -> ProviderError:
    if isinstance(err, ClientAuthenticationError):
        return ProviderError(
            ErrorCode.CLOUD_AUTH_FAILED,
            f"{what}: {err.message}. Remedy: reconnect the Azure subscription (POST /v1/cloud-accounts/azure) "
            "or fix the service principal",
            retryable=False,
        )
    if isinstance(err, ServiceRequestError):
        return ProviderError(ErrorCode.CLOUD_UNAVAILABLE, f"{what}: {err}", retryable=True)
    if not isinstance(err, HttpResponseError):
        return ProviderError(ErrorCode.PHASE_FAILED, f"{what}: {err}", retryable=True)
    status = err.status_code or 0
    code = (err.error.code if err.error else None) or ""
    message = (err.error.message if err.error else None) or err.reason or str(err)
    text = f"{what}: {code or status}: {message}"
    if "quota" in code.lower() or (code == "OperationNotAllowed" and "quota" in message.lower()):
        return ProviderError(
            ErrorCode.QUOTA_EXCEEDED,
            f"{text}. Remedy: request a vCPU quota increase for the VM family in this region "
            "(Azure portal > Quotas) or choose other VM sizes",
            retryable=False,
        )
    if status == 401:
        return ProviderError(ErrorCode.CLOUD_AUTH_FAILED, text, retryable=False)
    if status == 403 or code in ("AuthorizationFailed", "LinkedAuthorizationFailed"):
        return ProviderError(
            ErrorCode.PERMISSION_DENIED,
            f"{text}. Remedy: assign the service principal the Azure Kubernetes Service Contributor role "
            "on the resource group",
            retryable=False,
        )
    if status == 429:
        return ProviderError(ErrorCode.CLOUD_THROTTLED, text, retryable=True)
    if status == 409 and code in ("OperationNotAllowed", "AnotherOperationInProgress", "EtagMismatch"):
        return ProviderError(ErrorCode.CLOUD_BUSY, text, retryable=True)
    if status == 409:
        return ProviderError(ErrorCode.CLOUD_CONFLICT, text, retryable=False)
    if status == 404:
        return ProviderError(ErrorCode.CLOUD_NOT_FOUND, text, retryable=False)
    if status >= 500 or code in ("InternalServerError", "RetryableError"):
        return ProviderError(ErrorCode.CLOUD_UNAVAILABLE, text, retryable=True)
    if status == 200:  # a long-running operation that ended Failed
        return ProviderError(ErrorCode.CLOUD_OPERATION_FAILED, text, retryable=False)
    return ProviderError(ErrorCode.CLOUD_REJECTED, text, retryable=False)


class AksSession:
    """One phase's view of AKS: names, calls that classify errors, pollers awaited with heartbeats."""

    def __init__(
        self, client: ContainerServiceClient, reporter: PhaseReporter, group: str, cluster: str, poll_seconds: float
    ) -> None:
        self.client = client
        self.reporter = reporter
        self.group = group
        self.cluster = cluster
        self.poll_seconds = poll_seconds

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
        except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as err:
            raise classify_azure_error(err, what) from err

    async def get_cluster(self) -> aks.ManagedCluster | None:
        try:
            return await self.call(
                f"describe managed cluster {self.cluster}", self.client.managed_clusters.get, self.group, self.cluster
            )
        except ProviderError as err:
            if err.code == ErrorCode.CLOUD_NOT_FOUND:
                return None
            raise

    async def get_pool(self, name: str) -> aks.AgentPool | None:
        try:
            return await self.call(
                f"describe agent pool {name}", self.client.agent_pools.get, self.group, self.cluster, name
            )
        except ProviderError as err:
            if err.code == ErrorCode.CLOUD_NOT_FOUND:
                return None
            raise

    async def run(self, what: str, begin: Callable[..., LROPoller[T]], *args: Any) -> T:
        """Start a long-running operation (waiting out one already in flight) and wait for it."""
        for _ in range(_BUSY_POLLS):
            try:
                poller = await self.call(what, begin, *args)
                break
            except ProviderError as err:
                if err.code != ErrorCode.CLOUD_BUSY:
                    raise
                await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: waiting for another AKS operation")
        else:
            raise ProviderError(ErrorCode.CLOUD_BUSY, f"{what}: the cluster stayed busy", retryable=True)
        await self.reporter.event(f"lro/{what}", f"{what}: started")
        while not poller.done():
            await self.reporter.heartbeat_while(0.2, f"{what}: {poller.status()}")
        try:
            return poller.result()
        except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as err:
            raise classify_azure_error(err, what) from err

    async def wait_settled(self, what: str) -> aks.ManagedCluster:
        """Wait while the cluster has an operation in flight (one we did not start, or a lost one)."""
        while True:
            cluster = await self.get_cluster()
            if cluster is None:
                raise ProviderError(
                    ErrorCode.PHASE_FAILED, f"managed cluster {self.cluster} disappeared", retryable=True
                )
            if cluster.provisioning_state not in _IN_PROGRESS:
                return cluster
            await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: {cluster.provisioning_state}")


def _pool_profile(group: dict[str, Any], mode: str, version: str | None) -> dict[str, Any]:
    """Agent pool properties shared by cluster profiles and standalone agent pools."""
    minimum, maximum = int(group.get("minNode", 1)), int(group.get("maxNode", 1))
    if mode == "System":
        minimum = max(minimum, 1)
    machine_types = group.get("machineTypes") or []
    taints = [
        f"{t['key']}={t.get('value') or ''}:{t['effect']}" if t.get("value") else f"{t['key']}:{t['effect']}"
        for t in group.get("taints") or []
    ]
    spot = group.get("instanceType") == "spot" and mode != "System"
    return {
        "count": max(minimum, 1) if mode == "System" else minimum,
        "vm_size": machine_types[0] if machine_types else "",
        "mode": mode,
        "os_type": "Linux",
        "type": "VirtualMachineScaleSets",
        "enable_auto_scaling": True,
        "min_count": minimum,
        "max_count": max(maximum, minimum, 1),
        "availability_zones": [azure_catalog.aks_zone(z) for z in group.get("availabilityZones") or []] or None,
        "node_labels": dict(group.get("labels") or {}) or None,
        "node_taints": taints or None,
        "scale_set_priority": "Spot" if spot else None,
        "orchestrator_version": version,
    }


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


class AzureProvider:
    def __init__(self, pool: asyncpg.Pool[Any], settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        # Credentials per source ("" = settings, else a connected account), clients per
        # (source, subscription); reused across phases.
        self._credentials: dict[str, Any] = {}
        self._clients: dict[tuple[str, str], ContainerServiceClient] = {}

    async def _bind(self, inp: PhaseInput) -> asyncpg.Record | None:
        """The connected account the cluster's phases act as, if there is one."""
        return await federated_accounts.connected_for_cluster(self.pool, inp.cluster_id, "azure")

    def client(self, subscription_id: str, account: asyncpg.Record | None = None) -> ContainerServiceClient:
        source = account["id"] if account else ""
        if source not in self._credentials:
            self._credentials[source] = (
                azure_credential(self.settings, account["organization_id"], account["id"], dict(account["identity"]))
                if account
                else make_credential(self.settings)
            )
        if (source, subscription_id) not in self._clients:
            self._clients[(source, subscription_id)] = make_client(
                self.settings, self._credentials[source], subscription_id
            )
        return self._clients[(source, subscription_id)]

    def _session(self, inp: PhaseInput, reporter: PhaseReporter, account: asyncpg.Record | None) -> AksSession:
        block = aks_block(inp.spec)
        params = dict(account["params"]) if account else {}
        subscription = (
            block.get("subscriptionId") or params.get("subscriptionId") or self.settings.azure_default_subscription_id
        )
        group = block.get("resourceGroup") or params.get("resourceGroup") or self.settings.azure_default_resource_group
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

    @staticmethod
    def _check_owner(cluster: aks.ManagedCluster, inp: PhaseInput) -> None:
        if (cluster.tags or {}).get(OWNER_TAG) != inp.cluster_id:
            raise ProviderError(
                ErrorCode.CLOUD_CONFLICT,
                f"an AKS cluster named {inp.cluster_name} already exists in the resource group and is not managed "
                f"by cluster {inp.cluster_id}. Remedy: choose another clusterName or delete the existing cluster",
                retryable=False,
            )

    # --- deploy ---------------------------------------------------------------------------

    @activity.defn(name="azure.deploy_phase")
    async def deploy_phase(self, inp: PhaseInput) -> PhaseResult:
        account = await self._bind(inp)

        async def body(reporter: PhaseReporter) -> PhaseResult:
            if inp.phase == Phase.VALIDATE:
                validate_spec(inp.spec, inp.region)
                await reporter.event("spec", "spec matches the AKS catalog", fraction=0.5)
                session = self._session(inp, reporter, account)
                existing = await session.get_cluster()  # proves credentials and permission now
                if existing is not None:
                    self._check_owner(existing, inp)
                return PhaseResult(inp.phase)
            session = self._session(inp, reporter, account)
            if inp.phase == Phase.NETWORK:
                subnet = aks_block(inp.spec).get("vnetSubnetId")
                message = f"using subnet {subnet}" if subnet else "AKS builds a managed virtual network"
                await reporter.event("network", message, fraction=1.0)
                return PhaseResult(inp.phase)
            if inp.phase == Phase.CONTROL_PLANE:
                return await self._put_cluster(inp, session, reporter)
            if inp.phase == Phase.NODE_GROUPS:
                return await self._ensure_pools(inp, session, reporter)
            if inp.phase == Phase.ADDONS:
                await reporter.event("addons", "CoreDNS, kube-proxy and metrics-server are managed by AKS", fraction=1)
                return PhaseResult(inp.phase)
            return await self._verify(inp, session)

        return await run_phase(self.pool, inp, body)

    def _cluster_body(self, inp: PhaseInput) -> aks.ManagedCluster:
        block = aks_block(inp.spec)
        version = requested_version(inp.spec)
        system = system_group(inp.spec)
        profiles = [aks.ManagedClusterAgentPoolProfile(name=system["name"], **_pool_profile(system, "System", None))]
        profiles += [
            aks.ManagedClusterAgentPoolProfile(name=g["name"], **_pool_profile(g, "User", None))
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

    async def _put_cluster(self, inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
        existing = await session.get_cluster()
        verb = "created"
        if existing is not None:
            self._check_owner(existing, inp)
            existing = await session.wait_settled("control plane")
            verb = "found existing"
        if existing is None or existing.provisioning_state != "Succeeded":
            # Absent, or Failed/Canceled after an earlier attempt: PUT converges it.
            await session.run(
                f"create managed cluster {inp.cluster_name}",
                session.client.managed_clusters.begin_create_or_update,
                session.group,
                inp.cluster_name,
                self._cluster_body(inp),
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

    async def _ensure_pools(self, inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
        groups = [system_group(inp.spec), *node_groups(inp.spec)]
        seen: set[str] = set()
        resources = []
        for index, group in enumerate(groups):
            name = group["name"]
            if name in seen:
                continue
            seen.add(name)
            pool = await session.get_pool(name)
            if pool is None or pool.provisioning_state not in ("Succeeded", *_IN_PROGRESS):
                mode = "System" if index == 0 else "User"
                await session.run(
                    f"create agent pool {name}",
                    session.client.agent_pools.begin_create_or_update,
                    session.group,
                    inp.cluster_name,
                    name,
                    aks.AgentPool(**_pool_profile(group, mode, None)),
                )
                verb = "created"
            else:
                verb = "found existing"
            await reporter.event(f"pool/{name}", f"{verb} agent pool {name}", fraction=(index + 1) / len(groups))
            resources.append(f"aks-agent-pool/{name}")
        await session.wait_settled("agent pools")
        return PhaseResult(inp.phase, resources=resources)

    async def _verify(self, inp: PhaseInput, session: AksSession) -> PhaseResult:
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

    # --- delete ---------------------------------------------------------------------------

    @activity.defn(name="azure.delete_phase")
    async def delete_phase(self, inp: PhaseInput) -> PhaseResult:
        account = await self._bind(inp)

        async def body(reporter: PhaseReporter) -> PhaseResult:
            if inp.phase != Phase.CONTROL_PLANE:
                await reporter.event("nothing", f"{inp.phase}: nothing of its own on AKS", fraction=1.0)
                return PhaseResult(inp.phase)
            session = self._session(inp, reporter, account)
            cluster = await session.get_cluster()
            if cluster is None:
                await reporter.event("absent", f"AKS cluster {inp.cluster_name} does not exist", fraction=1.0)
                return PhaseResult(inp.phase)
            if (cluster.tags or {}).get(OWNER_TAG) != inp.cluster_id:
                await reporter.event(
                    "foreign",
                    f"AKS cluster {inp.cluster_name} is not managed by cluster {inp.cluster_id}; left untouched",
                    level="WARN",
                    fraction=1.0,
                )
                return PhaseResult(inp.phase)
            try:
                await session.run(
                    f"delete managed cluster {inp.cluster_name}",
                    session.client.managed_clusters.begin_delete,
                    session.group,
                    inp.cluster_name,
                )
            except ProviderError as err:
                if err.code != ErrorCode.CLOUD_NOT_FOUND:
                    raise
            await reporter.event("deleted", f"deleted AKS cluster {inp.cluster_name}", fraction=1.0)
            return PhaseResult(inp.phase, resources=[f"aks-cluster/{cluster.id}"])

        return await run_phase(self.pool, inp, body)

    # --- update ---------------------------------------------------------------------------

    @activity.defn(name="azure.update_phase")
    async def update_phase(self, inp: PhaseInput) -> PhaseResult:
        account = await self._bind(inp)

        async def body(reporter: PhaseReporter) -> PhaseResult:
            session = self._session(inp, reporter, account)
            cluster = await session.get_cluster()
            if cluster is None:
                raise ProviderError(
                    ErrorCode.CLOUD_NOT_FOUND, f"AKS cluster {inp.cluster_name} does not exist", retryable=False
                )
            if inp.phase == Phase.VALIDATE:
                self._check_owner(cluster, inp)
                await self._validate_change(inp, session, cluster)
                await reporter.event("plan", "update is allowed by the AKS catalog and upgrade profile", fraction=1)
                return PhaseResult(inp.phase)
            if inp.phase == Phase.CONTROL_PLANE:
                return await self._update_control_plane(inp, session, reporter)
            if inp.phase == Phase.NODE_GROUPS:
                return await self._update_pools(inp, session, reporter)
            if inp.phase == Phase.ADDONS:
                await reporter.event("addons", "AKS upgrades its managed add-ons with the cluster", fraction=1.0)
                return PhaseResult(inp.phase)
            return await self._verify(inp, session)

        return await run_phase(self.pool, inp, body)

    async def _validate_change(self, inp: PhaseInput, session: AksSession, cluster: aks.ManagedCluster) -> None:
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

    async def _update_control_plane(self, inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
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

    async def _update_pools(self, inp: PhaseInput, session: AksSession, reporter: PhaseReporter) -> PhaseResult:
        changes = list(inp.change.get("nodeGroups") or [])
        cluster = await session.wait_settled("agent pools")
        control_version = cluster.current_kubernetes_version or cluster.kubernetes_version or ""
        for index, group in enumerate(changes):
            name, kind = group["name"], group["changeType"]
            pool = await session.get_pool(name)
            message = f"agent pool {name}: nothing to do"
            put: aks.AgentPool | None = None
            if kind == "ADD" and pool is None:
                put = aks.AgentPool(**_pool_profile(group, "User", group.get("kubernetesVersion")))
                message = f"agent pool {name} added"
            elif kind == "REMOVE" and pool is not None:
                try:
                    await session.run(
                        f"remove agent pool {name}",
                        session.client.agent_pools.begin_delete,
                        session.group,
                        inp.cluster_name,
                        name,
                    )
                except ProviderError as err:
                    if err.code != ErrorCode.CLOUD_NOT_FOUND:
                        raise
                message = f"agent pool {name} removed"
            elif kind == "RESIZE" and pool is not None:
                minimum = int(group.get("minNode", pool.min_count or 0))
                maximum = int(group.get("maxNode", pool.max_count or minimum))
                size = group.get("desiredSize")
                if (pool.min_count, pool.max_count) != (minimum, maximum) or (size is not None and pool.count != size):
                    pool.min_count, pool.max_count, pool.enable_auto_scaling = minimum, maximum, True
                    if size is not None:
                        pool.count = int(size)
                    put = pool
                    message = f"agent pool {name} resized to {minimum}..{maximum}"
            elif kind == "UPGRADE" and pool is not None:
                target = group.get("kubernetesVersion") or inp.change.get("kubernetesVersion") or control_version
                if minor_of(pool.current_orchestrator_version or pool.orchestrator_version or "") != minor_of(target):
                    pool.orchestrator_version = target
                    put = pool
                    message = f"agent pool {name} upgraded to {target}"
            elif pool is None and kind != "REMOVE":
                raise ProviderError(
                    ErrorCode.INVALID_SPEC, f"agent pool {name} does not exist (use changeType ADD)", retryable=False
                )
            if put is not None:
                await session.run(
                    f"{kind.lower()} agent pool {name}",
                    session.client.agent_pools.begin_create_or_update,
                    session.group,
                    inp.cluster_name,
                    name,
                    put,
                )
            await reporter.event(f"pool/{name}/{kind}", message, fraction=(index + 1) / (len(changes) + 1))
        return PhaseResult(inp.phase, resources=[f"aks-agent-pool/{c['name']}" for c in changes])
