"""The `gcp` provider: GKE clusters through `google-cloud-container` (REST transport).

Why it is shaped this way:

- GKE runs every mutation as its own long-running `Operation`; a phase starts it and polls
  *that* operation until DONE (heartbeating between polls), then checks the resource. GKE allows
  one operation per cluster at a time: a mutation refused with FAILED_PRECONDITION because
  another is running waits for it inside the activity instead of failing.
- The cluster name is the idempotency key (GKE refuses a second cluster with the same name), and
  the `clusterflow-cluster-id` resource label says whose it is. Describe before create: a cluster
  carrying our label is ours from an earlier attempt and is waited for, not created again (an
  already-exists answer to a create races the same way); a same-named cluster without our label
  is someone else's: deploy fails with CLOUD_CONFLICT and delete leaves it alone.
- The SDK's own retries are disabled (`retry=None`): Temporal's retry policy is the one retry
  layer, so every retry is visible as an operation event. Errors are classified once here:
  quota, permission, authentication and invalid requests are permanent (with a remedy in the
  message); throttling, 5xx and a busy cluster are retryable.
- The client is synchronous (requests); calls run in a thread so the worker's event loop and
  heartbeats keep going.
- Credentials: when the cluster's organization has a CONNECTED GCP account for the cluster's
  name (cloud connect), the phase acts as that account's service account through Workload
  Identity Federation, in its project; otherwise it uses the settings' credentials (a static
  token or Application Default Credentials).

Deploy phases: VALIDATE (spec against the catalog, then a read to prove credentials and
permission), NETWORK (GKE builds VPC-native networking with the cluster; nothing to create),
CONTROL_PLANE (create the cluster with its node pools), NODE_GROUPS (create any pool still
missing, wait for all to run), ADDONS (GKE-managed; nothing to install), VERIFY.

Update phases read `PhaseInput.change`:
`{"kubernetesVersion": "1.33", "releaseChannel": "RAPID", "maintenanceWindow": {"dailyStartTime":
"03:00"} | {"startTime", "endTime", "recurrence"}, "tags": {...},
"nodeGroups": [{"name", "changeType": "ADD" | "RESIZE" | "REMOVE" | "UPGRADE", "machineTypes",
"minNode", "maxNode", "desiredSize", "kubernetesVersion"}]}`. VALIDATE checks the upgrade path
against the catalog (one minor at a time); CONTROL_PLANE upgrades the master, switches the
release channel, sets the maintenance window and labels; NODE_GROUPS applies node-group changes
(an UPGRADE without a version follows the master). Each step compares the live cluster first,
so a re-run changes nothing twice.

Delete phases: CONTROL_PLANE deletes the cluster (its node pools go with it); the others have
nothing of their own. A missing cluster is success.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.cloud import container_v1
from temporalio import activity

from clusterflow.activities.cloud_connect_gcp_azure import gcp_credentials
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError, run_phase
from clusterflow.catalog import gcp as gcp_catalog
from clusterflow.catalog import minor_of, version_key
from clusterflow.records import federated_accounts
from clusterflow.settings import Settings
from clusterflow.workflows.contracts import ErrorCode, Phase, PhaseInput, PhaseResult

T = TypeVar("T")

OWNER_LABEL = "clusterflow-cluster-id"
_RPC_RESOURCE_EXHAUSTED, _RPC_PERMISSION_DENIED, _RPC_UNAVAILABLE, _RPC_INTERNAL = 8, 7, 14, 13
_RPC_DEADLINE_EXCEEDED, _RPC_ABORTED = 4, 10
_TAINT_EFFECTS = {
    "NoSchedule": container_v1.NodeTaint.Effect.NO_SCHEDULE,
    "PreferNoSchedule": container_v1.NodeTaint.Effect.PREFER_NO_SCHEDULE,
    "NoExecute": container_v1.NodeTaint.Effect.NO_EXECUTE,
}
_CHANNELS = {
    "RAPID": container_v1.ReleaseChannel.Channel.RAPID,
    "REGULAR": container_v1.ReleaseChannel.Channel.REGULAR,
    "STABLE": container_v1.ReleaseChannel.Channel.STABLE,
    "EXTENDED": container_v1.ReleaseChannel.Channel.EXTENDED,
}
# How many polls a mutation waits for another operation on the same cluster before giving up
# this attempt (Temporal then retries it).
_BUSY_POLLS = 240


def gke_block(spec: dict[str, Any]) -> dict[str, Any]:
    return dict((spec.get("provisioner") or {}).get("gke") or {})


def node_groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list((((spec.get("clusterSpec") or {}).get("dataPlane") or {}).get("nodeGroups")) or [])


def owner_label(cluster_id: str) -> str:
    return cluster_id.lower()


def make_client(settings: Settings, credentials: Any = None) -> container_v1.ClusterManagerClient:
    """A GKE client on the configured endpoint: given (federated) credentials, else the
    settings' static token, else Application Default Credentials."""
    options = ClientOptions(api_endpoint=settings.gcp_endpoint) if settings.gcp_endpoint else None
    if credentials is None and settings.gcp_access_token is not None:
        from google.oauth2.credentials import Credentials

        credentials = Credentials(token=settings.gcp_access_token.get_secret_value())  # type: ignore[no-untyped-call]
    return container_v1.ClusterManagerClient(transport="rest", credentials=credentials, client_options=options)


def _error_body(err: gexc.GoogleAPICallError) -> dict[str, Any]:
    """Google's error JSON (`status` such as FAILED_PRECONDITION, the bare message), which
    api_core folds into its own message."""
    try:
        payload = err.response.json() if err.response is not None else {}
        return dict(payload.get("error") or {})
    except (ValueError, AttributeError):
        return {}


def classify_google_error(err: gexc.GoogleAPICallError, what: str) -> ProviderError:
    status = err.code or 0
    body = _error_body(err)
    message = str(body.get("message") or err.message or err)
    reason = (err.reason or "").upper()
    text = f"{what}: {message}"
    if "QUOTA" in reason or (status in (403, 429) and "quota" in message.lower()):
        return ProviderError(
            ErrorCode.QUOTA_EXCEEDED,
            f"{text}. Remedy: request a quota increase in the GCP console (IAM & Admin > Quotas) or choose "
            "smaller machine types or fewer nodes",
            retryable=False,
        )
    if status == 429:
        return ProviderError(ErrorCode.CLOUD_THROTTLED, text, retryable=True)
    if status == 401:
        return ProviderError(
            ErrorCode.CLOUD_AUTH_FAILED,
            f"{text}. Remedy: reconnect the GCP account (POST /v1/cloud-accounts/gcp) or fix the credentials",
            retryable=False,
        )
    if status == 403:
        return ProviderError(
            ErrorCode.PERMISSION_DENIED,
            f"{text}. Remedy: grant the service account roles/container.admin and roles/iam.serviceAccountUser "
            "on the project",
            retryable=False,
        )
    if status == 400 and body.get("status") == "FAILED_PRECONDITION":
        return ProviderError(ErrorCode.CLOUD_BUSY, text, retryable=True)
    if status == 409:
        return ProviderError(ErrorCode.CLOUD_CONFLICT, text, retryable=False)
    if status == 404:
        return ProviderError(ErrorCode.CLOUD_NOT_FOUND, text, retryable=False)
    if status >= 500 or status in (408,):
        return ProviderError(ErrorCode.CLOUD_UNAVAILABLE, text, retryable=True)
    return ProviderError(ErrorCode.CLOUD_REJECTED, text, retryable=False)


def classify_operation_error(code: int, message: str, what: str) -> ProviderError:
    text = f"{what} failed in GKE: {message}"
    if code == _RPC_RESOURCE_EXHAUSTED or "quota" in message.lower():
        return ProviderError(
            ErrorCode.QUOTA_EXCEEDED,
            f"{text}. Remedy: request a quota increase in the GCP console (IAM & Admin > Quotas) or choose "
            "smaller machine types or fewer nodes",
            retryable=False,
        )
    if code == _RPC_PERMISSION_DENIED:
        return ProviderError(ErrorCode.PERMISSION_DENIED, text, retryable=False)
    if code in (_RPC_UNAVAILABLE, _RPC_INTERNAL, _RPC_DEADLINE_EXCEEDED, _RPC_ABORTED):
        return ProviderError(ErrorCode.CLOUD_UNAVAILABLE, text, retryable=True)
    return ProviderError(ErrorCode.CLOUD_OPERATION_FAILED, text, retryable=False)


class GkeSession:
    """One phase's view of GKE: a cluster's names, and calls that classify errors and wait."""

    def __init__(
        self,
        client: container_v1.ClusterManagerClient,
        reporter: PhaseReporter,
        project: str,
        location: str,
        cluster: str,
        poll_seconds: float,
    ) -> None:
        self.client = client
        self.reporter = reporter
        self.project = project
        self.location = location
        self.cluster = cluster
        self.poll_seconds = poll_seconds

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def name(self) -> str:
        return f"{self.parent}/clusters/{self.cluster}"

    def pool_name(self, pool: str) -> str:
        return f"{self.name}/nodePools/{pool}"

    async def call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(functools.partial(fn, retry=None, **kwargs))
        except gexc.GoogleAPICallError as err:
            raise classify_google_error(err, what) from err

    async def get_cluster(self) -> container_v1.Cluster | None:
        try:
            return await self.call(f"describe cluster {self.cluster}", self.client.get_cluster, name=self.name)
        except ProviderError as err:
            if err.code == ErrorCode.CLOUD_NOT_FOUND:
                return None
            raise

    async def mutate(self, what: str, fn: Callable[..., container_v1.Operation], **kwargs: Any) -> None:
        """Start a GKE operation (waiting out another one on the cluster) and wait until DONE."""
        for _ in range(_BUSY_POLLS):
            try:
                operation = await self.call(what, fn, **kwargs)
                break
            except ProviderError as err:
                if err.code != ErrorCode.CLOUD_BUSY:
                    raise
                await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: waiting for another GKE operation")
        else:
            raise ProviderError(ErrorCode.CLOUD_BUSY, f"{what}: cluster stayed busy", retryable=True)
        await self.wait_operation(operation, what)

    async def wait_operation(self, operation: container_v1.Operation, what: str) -> None:
        name = f"{self.parent}/operations/{operation.name}"
        last_status = None
        while True:
            status = container_v1.Operation.Status(operation.status).name
            if status != last_status:
                await self.reporter.event(
                    f"gke-op/{operation.name}/{status}", f"{what}: GKE operation {operation.name} is {status}"
                )
                last_status = status
            if status == "DONE":
                if operation.error.message or operation.status_message:
                    message = operation.error.message or operation.status_message
                    raise classify_operation_error(operation.error.code, message, what)
                return
            await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: {status}")
            operation = await self.call(f"poll {what}", self.client.get_operation, name=name)

    async def wait_cluster(self, what: str, ready: Callable[[container_v1.Cluster], bool]) -> container_v1.Cluster:
        while True:
            cluster = await self.get_cluster()
            if cluster is None:
                raise ProviderError(ErrorCode.PHASE_FAILED, f"cluster {self.cluster} disappeared", retryable=True)
            state = container_v1.Cluster.Status(cluster.status).name
            if state == "ERROR":
                raise classify_operation_error(0, cluster.status_message or "cluster is in ERROR", what)
            if ready(cluster):
                return cluster
            await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: cluster {state}")


def _node_pool(group: dict[str, Any], version: str | None) -> container_v1.NodePool:
    machine_types = group.get("machineTypes") or []
    config = container_v1.NodeConfig(
        machine_type=machine_types[0] if machine_types else "",
        labels=dict(group.get("labels") or {}),
        taints=[
            container_v1.NodeTaint(key=t["key"], value=t.get("value") or "", effect=_TAINT_EFFECTS[t["effect"]])
            for t in group.get("taints") or []
        ],
        spot=group.get("instanceType") == "spot",
    )
    minimum, maximum = int(group.get("minNode", 1)), int(group.get("maxNode", 1))
    return container_v1.NodePool(
        name=group["name"],
        initial_node_count=max(minimum, 1),
        version=version or "",
        config=config,
        autoscaling=container_v1.NodePoolAutoscaling(enabled=True, min_node_count=minimum, max_node_count=maximum),
        locations=list(group.get("availabilityZones") or []),
    )


def _cluster_body(inp: PhaseInput, project: str, version: str) -> container_v1.Cluster:
    gke = gke_block(inp.spec)
    labels = {**(gke.get("labels") or {}), OWNER_LABEL: owner_label(inp.cluster_id)}
    cluster = container_v1.Cluster(
        name=inp.cluster_name,
        initial_cluster_version=version,
        resource_labels=labels,
        network=gke.get("networkId") or "",
    )
    if gke.get("releaseChannel"):
        cluster.release_channel = container_v1.ReleaseChannel(channel=_CHANNELS[gke["releaseChannel"]])
    if gke.get("autopilot"):
        cluster.autopilot = container_v1.Autopilot(enabled=True)
    else:
        cluster.node_pools = [_node_pool(g, None) for g in node_groups(inp.spec)]
    subnet = gke.get("subnet") or {}
    if subnet:
        cluster.subnetwork = subnet.get("name") or ""
        cluster.ip_allocation_policy = container_v1.IPAllocationPolicy(
            use_ip_aliases=True,
            cluster_secondary_range_name=subnet.get("podsRange") or "",
            services_secondary_range_name=subnet.get("servicesRange") or "",
        )
    if gke.get("privateCluster"):
        cluster.private_cluster_config = container_v1.PrivateClusterConfig(
            enable_private_nodes=True, master_ipv4_cidr_block=gke.get("masterIPv4CidrBlock") or ""
        )
    if gke.get("authorizedNetworks"):
        cluster.master_authorized_networks_config = container_v1.MasterAuthorizedNetworksConfig(
            enabled=True,
            cidr_blocks=[
                container_v1.MasterAuthorizedNetworksConfig.CidrBlock(cidr_block=c) for c in gke["authorizedNetworks"]
            ],
        )
    if gke.get("enableWorkloadIdentity"):
        cluster.workload_identity_config = container_v1.WorkloadIdentityConfig(workload_pool=f"{project}.svc.id.goog")
    return cluster


def requested_version(spec: dict[str, Any]) -> str:
    gke = gke_block(spec)
    versions = gcp_catalog.CATALOG.kubernetes["gke"]
    if gke.get("kubernetesVersion"):
        return str(gke["kubernetesVersion"])
    if gke.get("releaseChannel"):
        return versions.channels[gke["releaseChannel"]].default_version
    return versions.default_version


def validate_spec(spec: dict[str, Any], region: str) -> None:
    """The spec against the GKE catalog; raises a permanent INVALID_SPEC naming what is wrong."""
    catalog = gcp_catalog.CATALOG
    versions = catalog.kubernetes["gke"]
    gke = gke_block(spec)

    def invalid(message: str) -> ProviderError:
        return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)

    if catalog.region(region) is None:
        raise invalid(f"region {region} is not a GKE region (offered: {', '.join(r.id for r in catalog.regions)})")
    version = requested_version(spec)
    channel = gke.get("releaseChannel")
    offered = versions.versions(channel, bool(gke.get("autopilot")))
    if minor_of(version) not in offered:
        where = f"the {channel} channel" if channel else "GKE"
        where += " for Autopilot" if gke.get("autopilot") else ""
        raise invalid(f"kubernetesVersion {version} is not offered by {where} (offered: {', '.join(offered)})")
    if gke.get("autopilot"):
        return
    zones = {z for r in catalog.regions if r.id == region for z in r.zones}
    for group in node_groups(spec):
        for zone in group.get("availabilityZones") or []:
            if zone not in zones:
                raise invalid(f"zone {zone} of node group {group['name']!r} is not in region {region}")
        for machine in group.get("machineTypes") or []:
            offered_in = catalog.machine_types_in(region)
            if machine not in {m.name for m in offered_in}:
                raise invalid(
                    f"machine type {machine!r} of node group {group['name']!r} is not offered in {region} "
                    f"(see GET /v1/providers/gcp/regions/{region}/machine-types)"
                )


class GcpProvider:
    def __init__(self, pool: asyncpg.Pool[Any], settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        # One client per credential source (settings, or each connected account), reused.
        self._clients: dict[str, container_v1.ClusterManagerClient] = {}

    async def _bind(self, inp: PhaseInput) -> tuple[container_v1.ClusterManagerClient, str | None]:
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

    # --- deploy ---------------------------------------------------------------------------

    @activity.defn(name="gcp.deploy_phase")
    async def deploy_phase(self, inp: PhaseInput) -> PhaseResult:
        bound = await self._bind(inp)

        async def body(reporter: PhaseReporter) -> PhaseResult:
            gke = self._session(inp, reporter, bound)
            if inp.phase == Phase.VALIDATE:
                validate_spec(inp.spec, inp.region)
                await reporter.event("spec", "spec matches the GKE catalog", fraction=0.5)
                existing = await gke.get_cluster()  # proves credentials and permission now
                if existing is not None:
                    self._check_owner(existing, inp)
                return PhaseResult(inp.phase)
            if inp.phase == Phase.NETWORK:
                network = gke_block(inp.spec).get("networkId") or "default"
                await reporter.event("network", f"GKE builds VPC-native networking in network {network}", fraction=1)
                return PhaseResult(inp.phase)
            if inp.phase == Phase.CONTROL_PLANE:
                return await self._create_cluster(inp, gke, reporter)
            if inp.phase == Phase.NODE_GROUPS:
                return await self._ensure_node_pools(inp, gke, reporter)
            if inp.phase == Phase.ADDONS:
                await reporter.event("addons", "kube-dns, kube-proxy and metrics-server are managed by GKE", fraction=1)
                return PhaseResult(inp.phase)
            return await self._verify(inp, gke)

        return await run_phase(self.pool, inp, body)

    @staticmethod
    def _check_owner(cluster: container_v1.Cluster, inp: PhaseInput) -> None:
        owner = cluster.resource_labels.get(OWNER_LABEL)
        if owner != owner_label(inp.cluster_id):
            raise ProviderError(
                ErrorCode.CLOUD_CONFLICT,
                f"a GKE cluster named {inp.cluster_name} already exists in {inp.region} and is not managed by "
                f"cluster {inp.cluster_id}. Remedy: choose another clusterName or delete the existing cluster",
                retryable=False,
            )

    async def _create_cluster(self, inp: PhaseInput, gke: GkeSession, reporter: PhaseReporter) -> PhaseResult:
        existing = await gke.get_cluster()
        if existing is not None and container_v1.Cluster.Status(existing.status).name == "ERROR":
            self._check_owner(existing, inp)
            failure = classify_operation_error(0, existing.status_message or "cluster is in ERROR", "create cluster")
            if not failure.retryable and failure.code == ErrorCode.QUOTA_EXCEEDED:
                raise failure
            # GKE cannot repair a cluster whose creation failed: remove ours and create it again.
            await reporter.event("recreate", f"GKE cluster {inp.cluster_name} is in ERROR; deleting it to retry")
            await gke.mutate(f"delete failed cluster {inp.cluster_name}", gke.client.delete_cluster, name=gke.name)
            existing = None
        if existing is None:
            body = _cluster_body(inp, gke.project, requested_version(inp.spec))
            try:
                await gke.mutate(
                    f"create cluster {inp.cluster_name}", gke.client.create_cluster, parent=gke.parent, cluster=body
                )
                verb = "created"
            except ProviderError as err:
                if err.code != ErrorCode.CLOUD_CONFLICT:
                    raise
                # Created by a concurrent or lost attempt: check it is ours and wait for it.
                existing = await gke.get_cluster()
                if existing is None:
                    raise ProviderError(ErrorCode.CLOUD_BUSY, err.message, retryable=True) from err
                verb = "found existing"
        else:
            verb = "found existing"
        if existing is not None:
            self._check_owner(existing, inp)
        cluster = await gke.wait_cluster(
            "control plane", lambda c: container_v1.Cluster.Status(c.status).name == "RUNNING"
        )
        await reporter.event(
            "cluster", f"{verb} GKE cluster {inp.cluster_name} ({cluster.current_master_version})", fraction=1.0
        )
        return PhaseResult(inp.phase, resources=[f"gke-cluster/{gke.name}"])

    async def _ensure_node_pools(self, inp: PhaseInput, gke: GkeSession, reporter: PhaseReporter) -> PhaseResult:
        if gke_block(inp.spec).get("autopilot"):
            await reporter.event("autopilot", "Autopilot provisions nodes on demand; no node pools", fraction=1.0)
            return PhaseResult(inp.phase)
        groups = node_groups(inp.spec)
        cluster = await gke.get_cluster()
        if cluster is None:
            raise ProviderError(ErrorCode.PHASE_FAILED, f"cluster {inp.cluster_name} does not exist", retryable=True)
        present = {p.name for p in cluster.node_pools}
        for index, group in enumerate(groups):
            if group["name"] not in present:
                await self._create_pool(gke, group)
                verb = "created"
            else:
                verb = "found existing"
            await reporter.event(
                f"pool/{group['name']}", f"{verb} node pool {group['name']}", fraction=(index + 1) / (len(groups) + 1)
            )
        wanted = {g["name"] for g in groups}
        await gke.wait_cluster(
            "node pools",
            lambda c: all(
                container_v1.NodePool.Status(p.status).name == "RUNNING" for p in c.node_pools if p.name in wanted
            ),
        )
        return PhaseResult(inp.phase, resources=[f"gke-node-pool/{gke.pool_name(n)}" for n in sorted(wanted)])

    async def _create_pool(self, gke: GkeSession, group: dict[str, Any], version: str | None = None) -> None:
        try:
            await gke.mutate(
                f"create node pool {group['name']}",
                gke.client.create_node_pool,
                parent=gke.name,
                node_pool=_node_pool(group, version),
            )
        except ProviderError as err:
            if err.code != ErrorCode.CLOUD_CONFLICT:  # already exists: an earlier attempt made it
                raise

    async def _verify(self, inp: PhaseInput, gke: GkeSession) -> PhaseResult:
        cluster = await gke.wait_cluster("verify", lambda c: container_v1.Cluster.Status(c.status).name == "RUNNING")
        return PhaseResult(
            inp.phase,
            outputs={
                "cluster": {
                    "kubernetesVersion": minor_of(cluster.current_master_version),
                    "currentMasterVersion": cluster.current_master_version,
                    "endpoint": f"https://{cluster.endpoint}",
                    "selfLink": cluster.self_link,
                }
            },
        )

    # --- delete ---------------------------------------------------------------------------

    @activity.defn(name="gcp.delete_phase")
    async def delete_phase(self, inp: PhaseInput) -> PhaseResult:
        bound = await self._bind(inp)

        async def body(reporter: PhaseReporter) -> PhaseResult:
            if inp.phase != Phase.CONTROL_PLANE:
                await reporter.event("nothing", f"{inp.phase}: nothing of its own on GKE", fraction=1.0)
                return PhaseResult(inp.phase)
            gke = self._session(inp, reporter, bound)
            cluster = await gke.get_cluster()
            if cluster is None:
                await reporter.event("absent", f"GKE cluster {inp.cluster_name} does not exist", fraction=1.0)
                return PhaseResult(inp.phase)
            if cluster.resource_labels.get(OWNER_LABEL) != owner_label(inp.cluster_id):
                await reporter.event(
                    "foreign",
                    f"GKE cluster {inp.cluster_name} is not managed by cluster {inp.cluster_id}; left untouched",
                    level="WARN",
                    fraction=1.0,
                )
                return PhaseResult(inp.phase)
            try:
                await gke.mutate(f"delete cluster {inp.cluster_name}", gke.client.delete_cluster, name=gke.name)
            except ProviderError as err:
                if not (err.code == ErrorCode.CLOUD_NOT_FOUND):
                    raise
            await reporter.event("deleted", f"deleted GKE cluster {inp.cluster_name}", fraction=1.0)
            return PhaseResult(inp.phase, resources=[f"gke-cluster/{gke.name}"])

        return await run_phase(self.pool, inp, body)

    # --- update ---------------------------------------------------------------------------

    @activity.defn(name="gcp.update_phase")
    async def update_phase(self, inp: PhaseInput) -> PhaseResult:
        bound = await self._bind(inp)

        async def body(reporter: PhaseReporter) -> PhaseResult:
            gke = self._session(inp, reporter, bound)
            cluster = await gke.get_cluster()
            if cluster is None:
                raise ProviderError(
                    ErrorCode.CLOUD_REJECTED, f"GKE cluster {inp.cluster_name} does not exist", retryable=False
                )
            if inp.phase == Phase.VALIDATE:
                self._check_owner(cluster, inp)
                self._validate_change(inp, cluster)
                await reporter.event("plan", "update is allowed by the GKE catalog", fraction=1.0)
                return PhaseResult(inp.phase)
            if inp.phase == Phase.CONTROL_PLANE:
                return await self._update_control_plane(inp, gke, cluster, reporter)
            if inp.phase == Phase.NODE_GROUPS:
                return await self._update_node_groups(inp, gke, cluster, reporter)
            if inp.phase == Phase.ADDONS:
                await reporter.event("addons", "GKE upgrades its managed add-ons with the cluster", fraction=1.0)
                return PhaseResult(inp.phase)
            return await self._verify(inp, gke)

        return await run_phase(self.pool, inp, body)

    @staticmethod
    def _validate_change(inp: PhaseInput, cluster: container_v1.Cluster) -> None:
        change = inp.change
        versions = gcp_catalog.CATALOG.kubernetes["gke"]

        def invalid(message: str) -> ProviderError:
            return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)

        if "autopilot" in change and bool(change["autopilot"]) != bool(cluster.autopilot.enabled):
            raise invalid("autopilot cannot be switched on or off on an existing GKE cluster")
        if change.get("releaseChannel") and change["releaseChannel"] not in versions.channels:
            raise invalid(f"releaseChannel {change['releaseChannel']} is unknown")
        target = change.get("kubernetesVersion")
        if target:
            current = cluster.current_master_version
            if version_key(minor_of(target)) < version_key(minor_of(current)):
                raise invalid(f"GKE cannot downgrade the control plane from {current} to {target}")
            if minor_of(target) != minor_of(current) and versions.upgrade_path(current, target) is None:
                raise invalid(
                    f"no upgrade path from {minor_of(current)} to {target}: the control plane moves one minor "
                    f"version at a time (see GET /v1/kubernetes-versions?cloudProvider=gcp&provisionerType=gke)"
                )
        for group in change.get("nodeGroups") or []:
            if group.get("changeType") not in ("ADD", "RESIZE", "REMOVE", "UPGRADE"):
                raise invalid(f"node group {group.get('name')!r}: unknown changeType {group.get('changeType')!r}")

    async def _update_control_plane(
        self, inp: PhaseInput, gke: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
    ) -> PhaseResult:
        change = inp.change
        done: list[str] = []
        target = change.get("kubernetesVersion")
        if target and minor_of(cluster.current_master_version) != minor_of(target):
            await gke.mutate(
                f"upgrade control plane to {target}",
                gke.client.update_cluster,
                name=gke.name,
                update=container_v1.ClusterUpdate(desired_master_version=target),
            )
            done.append(f"control plane upgraded to {target}")
        channel = change.get("releaseChannel")
        if channel and cluster.release_channel.channel != _CHANNELS[channel]:
            await gke.mutate(
                f"switch release channel to {channel}",
                gke.client.update_cluster,
                name=gke.name,
                update=container_v1.ClusterUpdate(
                    desired_release_channel=container_v1.ReleaseChannel(channel=_CHANNELS[channel])
                ),
            )
            done.append(f"release channel {channel}")
        window = change.get("maintenanceWindow")
        if window:
            await gke.mutate(
                "set maintenance window",
                gke.client.set_maintenance_policy,
                name=gke.name,
                maintenance_policy=_maintenance_policy(window),
            )
            done.append("maintenance window set")
        tags = change.get("tags")
        if tags is not None:
            fresh = await gke.get_cluster()
            labels = {**tags, OWNER_LABEL: owner_label(inp.cluster_id)}
            if fresh is not None and dict(fresh.resource_labels) != labels:
                await gke.mutate(
                    "set labels",
                    gke.client.set_labels,
                    request=container_v1.SetLabelsRequest(
                        name=gke.name, resource_labels=labels, label_fingerprint=fresh.label_fingerprint
                    ),
                )
                done.append("labels set")
        await reporter.event("control-plane", "; ".join(done) or "control plane already as requested", fraction=1.0)
        return PhaseResult(inp.phase, outputs={"controlPlane": done})

    async def _update_node_groups(
        self, inp: PhaseInput, gke: GkeSession, cluster: container_v1.Cluster, reporter: PhaseReporter
    ) -> PhaseResult:
        changes = list(inp.change.get("nodeGroups") or [])
        pools = {p.name: p for p in cluster.node_pools}
        for index, group in enumerate(changes):
            name, kind = group["name"], group["changeType"]
            pool = pools.get(name)
            message = f"node pool {name}: nothing to do"
            if kind == "ADD" and pool is None:
                await self._create_pool(gke, group, group.get("kubernetesVersion"))
                message = f"node pool {name} added"
            elif kind == "REMOVE" and pool is not None:
                try:
                    await gke.mutate(f"remove node pool {name}", gke.client.delete_node_pool, name=gke.pool_name(name))
                except ProviderError as err:
                    if not (err.code == ErrorCode.CLOUD_NOT_FOUND):
                        raise
                message = f"node pool {name} removed"
            elif kind == "RESIZE" and pool is not None:
                message = await self._resize(gke, pool, group)
            elif kind == "UPGRADE" and pool is not None:
                target = group.get("kubernetesVersion") or inp.change.get("kubernetesVersion")
                target = target or minor_of(cluster.current_master_version)
                if minor_of(pool.version) != minor_of(target):
                    await gke.mutate(
                        f"upgrade node pool {name} to {target}",
                        gke.client.update_node_pool,
                        request=container_v1.UpdateNodePoolRequest(
                            name=gke.pool_name(name),
                            node_version=target,
                            image_type=pool.config.image_type or "COS_CONTAINERD",
                        ),
                    )
                    message = f"node pool {name} upgraded to {target}"
            elif pool is None and kind != "REMOVE":
                raise ProviderError(
                    ErrorCode.INVALID_SPEC, f"node pool {name} does not exist (use changeType ADD)", retryable=False
                )
            await reporter.event(f"pool/{name}/{kind}", message, fraction=(index + 1) / (len(changes) + 1))
        return PhaseResult(inp.phase, resources=[f"gke-node-pool/{gke.pool_name(c['name'])}" for c in changes])

    async def _resize(self, gke: GkeSession, pool: container_v1.NodePool, group: dict[str, Any]) -> str:
        name = pool.name
        minimum = int(group.get("minNode", pool.autoscaling.min_node_count))
        maximum = int(group.get("maxNode", pool.autoscaling.max_node_count))
        done = []
        if (pool.autoscaling.min_node_count, pool.autoscaling.max_node_count) != (minimum, maximum):
            await gke.mutate(
                f"set autoscaling of node pool {name}",
                gke.client.set_node_pool_autoscaling,
                request=container_v1.SetNodePoolAutoscalingRequest(
                    name=gke.pool_name(name),
                    autoscaling=container_v1.NodePoolAutoscaling(
                        enabled=True, min_node_count=minimum, max_node_count=maximum
                    ),
                ),
            )
            done.append(f"autoscaling {minimum}..{maximum}")
        if group.get("desiredSize") is not None:
            await gke.mutate(
                f"resize node pool {name}",
                gke.client.set_node_pool_size,
                request=container_v1.SetNodePoolSizeRequest(
                    name=gke.pool_name(name), node_count=int(group["desiredSize"])
                ),
            )
            done.append(f"size {group['desiredSize']}")
        return f"node pool {name}: " + (", ".join(done) or "already at the requested size")


def _maintenance_policy(window: dict[str, Any]) -> container_v1.MaintenancePolicy:
    if window.get("dailyStartTime"):
        return container_v1.MaintenancePolicy(
            window=container_v1.MaintenanceWindow(
                daily_maintenance_window=container_v1.DailyMaintenanceWindow(start_time=window["dailyStartTime"])
            )
        )
    from google.protobuf.timestamp_pb2 import Timestamp

    start, end = Timestamp(), Timestamp()
    start.FromJsonString(window["startTime"])
    end.FromJsonString(window["endTime"])
    return container_v1.MaintenancePolicy(
        window=container_v1.MaintenanceWindow(
            recurring_window=container_v1.RecurringTimeWindow(
                window=container_v1.TimeWindow(start_time=start, end_time=end),
                recurrence=window.get("recurrence") or "FREQ=WEEKLY;BYDAY=SA,SU",
            )
        )
    )
