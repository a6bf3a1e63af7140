"""Registered clusters: register (agent manifest + one-time token), registration status,
unregister, kubeconfig generation (also for managed clusters) and resync.

Registration creates the cluster record (provider `registered`, provisioner `agent`) and a
CLUSTER_REGISTER operation in one transaction through `enqueue`, like a deploy. The one-time
token is returned once, inside the manifest and the install script, and stored only hashed.
The idempotency replay of a registration therefore cannot repeat the manifest (it would have
to store the token in clear): a replay says so and names the operation.

Kubeconfigs: managed clusters (EKS, GKE, AKS) are answered at once (200) with a kubeconfig a
worker builds and seals to the request (`api/credentials.py`, `activities/kubeconfig.py`), never
stored; registered clusters go through a KUBECONFIG_GENERATE operation and the agent (202, then
`GET`); the local simulator has no API server to point at (409).

As in the reference, the path parameter is `{clusterId}` everywhere, although register takes
the new cluster's name; the other routes accept the cluster's ID or its name.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse

from clusterflow.api import credentials
from clusterflow.api.commands.agent_tasks import AgentTask, GenerateKubeconfig
from clusterflow.api.commands.register import RegisterCluster, manifest_for
from clusterflow.api.deps import AppSettings, Editor, EditorOperation, OperationContext, Pool, Viewer
from clusterflow.api.enqueue import accepted_response, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.schemas.common import ERRORS, Envelope, OperationAccepted
from clusterflow.api.schemas.registration import (
    AgentInfo,
    ConnectionEvent,
    Empty,
    ErrorMessage,
    Instructions,
    Kubeconfig,
    KubeconfigRequest,
    RegisterRequest,
    Registration,
    RegistrationStatus,
)
from clusterflow.api.views import timestamp
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.operations import ClusterState, ErrorCode, OperationStatus, OperationType
from clusterflow.records import clusters, operations, registrations, secrets_store
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.operations import OperationRow
from clusterflow.records.registrations import RegistrationRow
from clusterflow.settings import Settings
from clusterflow.vault import Sealed, Sealer
from clusterflow.workflows.register import registration_instructions

router = APIRouter(prefix="/v1/clusters", tags=["registered clusters"])

# The reference names these path parameters `clusterId` although register takes a name.
NewClusterName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=50,
        pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the cluster to register (a DNS label)",
    ),
]
ClusterRef = Annotated[str, Path(min_length=1, max_length=64, description="Cluster ID or name")]

DRY_RUN_TOKEN = "cfreg_DRY-RUN-NOT-A-VALID-TOKEN"  # noqa: S105 - a placeholder, not a secret
MANAGED_PROVIDERS = ("aws", "gcp", "azure")
MANAGED_REFUSALS = {
    CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED: 409,
    CloudErrorCode.CLOUD_ACCESS_DENIED: 409,
    CloudErrorCode.CLOUD_RESOURCE_FAILED: 409,
    CloudErrorCode.CLOUD_CREDENTIALS_FAILED: 502,
    ErrorCode.PERMISSION_DENIED: 502,
    ErrorCode.CLOUD_AUTH_FAILED: 502,
    ErrorCode.CLOUD_NOT_FOUND: 409,
    "CLUSTER_NOT_FOUND": 404,
    "KUBECONFIG_NOT_EXPIRING": 409,
}
MIN_KUBECONFIG_SECONDS = 600  # the kube API refuses service-account tokens shorter than 10 minutes
MAX_KUBECONFIG_SECONDS = 7 * 24 * 3600


async def resolve_cluster(pool: Pool, organization_id: str, ref: str) -> ClusterRow:
    """The organization's cluster by ID, or its live cluster by name; 404 otherwise."""
    row = await clusters.get(pool, organization_id, ref) if ref.startswith("cl_") else None
    if row is None:
        cluster_id = await registrations.find_live_cluster_by_name(pool, organization_id, ref)
        row = await clusters.get(pool, organization_id, cluster_id) if cluster_id else None
    if row is None:
        raise not_found("cluster", ref)
    return row


def _not_registered(row: ClusterRow) -> ApiError:
    return ApiError(
        409,
        "CLUSTER_NOT_REGISTERED",
        f"cluster {row.name} was deployed on provider {row.provider!r}, not registered with an agent",
        {"clusterId": row.id, "provider": row.provider},
    )


@router.post(
    "/{clusterId}/register",
    status_code=202,
    summary="Register an existing cluster through an agent",
    description="Creates the cluster record and a CLUSTER_REGISTER operation, and returns the agent manifest "
    "(namespace, service account, least-privilege RBAC, a Secret with a one-time registration token that "
    "expires, the agent Deployment) and a one-line install script. The operation succeeds when the agent "
    "connects. `dryRun` (body or query) returns the manifest and persists nothing (200). Works with any "
    "cluster type. A registered cluster whose registration failed or whose agent was revoked can be "
    "registered again: it gets a new token.",
    response_model=Envelope[Registration],
    responses={200: {"model": Envelope[Registration], "description": "dry run: the manifest only"}, **ERRORS},
)
async def register_cluster(
    clusterId: NewClusterName,
    ctx: EditorOperation,
    body: Annotated[RegisterRequest | None, Body()] = None,
    dryRun: Annotated[bool, Query(description="Return the manifest without persisting anything")] = False,
) -> JSONResponse:
    req = body or RegisterRequest()
    if dryRun or req.dryRun:
        registration = Registration(
            operationId=None,
            clusterId=None,
            clusterName=clusterId,
            status="DRY_RUN",
            message="dry run: nothing was persisted; the token in this manifest is a placeholder",
            manifest=manifest_for(ctx.settings, clusterId, DRY_RUN_TOKEN, req.architecture),
            installScript=None,
            registrationTokenExpiresAt=None,
        )
        return JSONResponse(
            {
                "id": request_id_of(ctx.request),
                "status": "success",
                "message": "dry run",
                "data": registration.model_dump(),
            }
        )
    fingerprint = ctx.fingerprint(json.loads(await ctx.request.body() or b"null"))
    command = await RegisterCluster.create(ctx, clusterId, req, fingerprint)
    accepted = await enqueue(command, fingerprint)
    return accepted_response(accepted, command.registration(accepted))


def _instructions(settings: Settings, row: ClusterRow, reg: RegistrationRow, op: OperationRow | None) -> Instructions:
    namespace = settings.agent_namespace
    check = f"kubectl -n {namespace} get pods && kubectl -n {namespace} logs deploy/clusterflow-agent"
    if reg.revoked_at is not None:
        return Instructions(
            message="the agent is revoked; register the cluster again to issue a new token", scriptContent=None
        )
    status = reg.connection_status
    if status == registrations.ConnectionStatus.CONNECTED:
        return Instructions(message="the agent is connected and heartbeating; nothing to do")
    if status == registrations.ConnectionStatus.DISCONNECTED:
        return Instructions(
            message=f"the agent stopped heartbeating (last at {timestamp(reg.last_heartbeat_at)}); check that its "
            "pod runs and can reach the control plane",
            scriptContent=check,
        )
    if op is not None and op.status == OperationStatus.FAILED:
        return Instructions(message=registration_instructions(row.name, namespace), scriptContent=check)
    return Instructions(
        message="apply the agent manifest returned at registration (or run its install script); the agent dials "
        f"out to {settings.api_url} and needs no inbound port",
        scriptContent=check,
    )


@router.get(
    "/{clusterId}/registration",
    response_model=Envelope[RegistrationStatus],
    responses=ERRORS,
    summary="Agent connection status and registration progress",
)
async def get_registration(
    request: Request,
    clusterId: ClusterRef,
    principal: Viewer,
    pool: Pool,
    settings: AppSettings,
    operationId: Annotated[str | None, Query(max_length=64, description="A registration operation to report")] = None,
) -> Envelope[RegistrationStatus]:
    row = await resolve_cluster(pool, principal.organization_id, clusterId)
    reg = await registrations.get(pool, row.id)
    if reg is None:
        raise _not_registered(row)
    op_id = operationId or reg.register_operation_id
    op = await operations.get(pool, principal.organization_id, op_id) if op_id else None
    if operationId and (op is None or op.cluster_id != row.id):
        raise not_found("operation", operationId)
    info = reg.agent_info or {}
    events = await registrations.connection_events(pool, row.id)
    error = (op.error or {}).get("message") if op is not None else None
    status = RegistrationStatus(
        clusterId=row.id,
        clusterName=row.name,
        clusterState=row.state,
        connectionStatus=reg.connection_status,
        lastHealthCheck=timestamp(reg.last_heartbeat_at),
        operationId=op.id if op is not None else None,
        status=op.status if op is not None else None,
        message=(op.message if op is not None else None) or "",
        error=ErrorMessage(message=error) if error else None,
        instructions=_instructions(settings, row, reg, op),
        agent=AgentInfo(**{k: info.get(k) for k in AgentInfo.model_fields}) if info else None,
        revoked=reg.revoked_at is not None,
        connectionEvents=[
            ConnectionEvent(timestamp=timestamp(e.timestamp) or "", status=e.status, message=e.message) for e in events
        ],
    )
    return Envelope(id=request_id_of(request), message=f"agent {status.connectionStatus}", data=status)


@router.delete(
    "/{clusterId}/registration",
    status_code=202,
    summary="Unregister a cluster",
    description="Default: a CLUSTER_UNREGISTER operation asks the agent to remove itself from the cluster, "
    "revokes its credential and marks the cluster DELETED (202). With `agent-only=true`: only tombstone the "
    "agent (its credential is revoked at once, its connection closed) and keep the cluster record (200).",
    response_model=Envelope[OperationAccepted],
    responses={200: {"model": Envelope[Empty], "description": "agent tombstoned"}, **ERRORS},
)
async def unregister_cluster(
    clusterId: ClusterRef,
    ctx: EditorOperation,
    agent_only: Annotated[
        bool, Query(alias="agent-only", description="Only tombstone the agent, keep the cluster record")
    ] = False,
) -> JSONResponse:
    row = await resolve_cluster(ctx.pool, ctx.organization_id, clusterId)
    if row.state == ClusterState.DELETED:
        raise not_found("cluster", clusterId)
    reg = await registrations.get(ctx.pool, row.id)
    if reg is None:
        raise _not_registered(row)
    if agent_only:
        async with ctx.pool.acquire() as conn:
            await registrations.revoke(conn, row.id, "agent tombstoned (agent-only unregistration)")
        return JSONResponse(
            {"id": request_id_of(ctx.request), "status": "success", "message": "agent tombstoned", "data": {}}
        )
    command = AgentTask(
        ctx=ctx,
        operation_type=OperationType.CLUSTER_UNREGISTER,
        row=row,
        timeout_seconds=ctx.settings.agent_uninstall_wait_seconds,
        accepted_message="unregistration accepted",
    )
    return accepted_response(await enqueue(command, ctx.fingerprint({}, with_query=True)))


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(value: int | str) -> int:
    """A Go duration ("1h30m", "24h") or an integer of nanoseconds, in whole seconds."""
    if isinstance(value, int):
        return value // 1_000_000_000
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"duration {value!r} is not a Go duration such as 1h, 30m or 24h",
            [{"field": "duration", "message": "not a duration", "type": "duration"}],
        )
    return int(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def _require_active_registered(row: ClusterRow, reg: RegistrationRow | None) -> RegistrationRow:
    if reg is None:
        raise _not_registered(row)
    if reg.revoked_at is not None or row.state != ClusterState.ACTIVE:
        raise ApiError(
            409,
            "CLUSTER_NOT_ACTIVE",
            f"cluster {row.name} is {row.state}" + (" and its agent is revoked" if reg.revoked_at else ""),
            {"clusterId": row.id, "state": row.state},
        )
    return reg


async def _managed_kubeconfig(ctx: OperationContext, row: ClusterRow, seconds: int) -> JSONResponse:
    """EKS, GKE, AKS: built on a worker (`activities/kubeconfig.py`), sealed to this request's key,
    returned once and never stored."""
    if row.state != ClusterState.ACTIVE:
        raise ApiError(
            409,
            "CLUSTER_NOT_ACTIVE",
            f"cluster {row.name} is {row.state}",
            {"clusterId": row.id, "state": row.state},
        )
    issued = await credentials.kubeconfig(
        ctx.temporal,
        ctx.settings,
        provider=row.provider,
        organization_id=ctx.organization_id,
        cluster_id=row.id,
        duration_seconds=seconds,
        refusals=MANAGED_REFUSALS,
    )
    view = Kubeconfig(
        operationId=None,
        clusterId=row.id,
        status="READY",
        kubeconfig=issued["kubeconfig"],
        expiresAt=issued["expiration"] or None,
    )
    body = {"id": request_id_of(ctx.request), "status": "success", "message": "ready", "data": view.model_dump()}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post(
    "/{clusterId}/kubeconfig",
    status_code=202,
    summary="Generate a kubeconfig",
    description="Managed clusters (providers aws, gcp, azure: EKS, GKE, AKS) answer 200 with the kubeconfig "
    "at once: a worker builds it for the organization's connected account, with a token capped at "
    "`duration` where the cloud allows (EKS at most 15 minutes, GKE at most an hour, AKS as Entra ID issues "
    "it); it is returned once and never stored (`GET` has nothing for them). Registered clusters: a "
    "KUBECONFIG_GENERATE operation asks the agent for a service-account token valid for `duration` (10m to "
    "168h) and answers 202; poll `GET` until it answers 200 with the config, stored encrypted until it "
    "expires. Clusters of the local simulator have no API server: 409 `KUBECONFIG_NOT_AVAILABLE`.",
    response_model=Envelope[OperationAccepted],
    responses={200: {"model": Envelope[Kubeconfig], "description": "managed cluster: the kubeconfig"}, **ERRORS},
)
async def generate_kubeconfig(clusterId: ClusterRef, body: KubeconfigRequest, ctx: EditorOperation) -> JSONResponse:
    row = await resolve_cluster(ctx.pool, ctx.organization_id, clusterId)
    if body.clusterName != row.name:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"clusterName {body.clusterName!r} does not name cluster {row.id} ({row.name})",
            [{"field": "clusterName", "message": "does not match the cluster", "type": "mismatch"}],
        )
    seconds = duration_seconds(body.duration)
    if not MIN_KUBECONFIG_SECONDS <= seconds <= MAX_KUBECONFIG_SECONDS:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            "duration must be between 10m and 168h",
            [{"field": "duration", "message": "must be between 10m and 168h", "type": "range"}],
        )
    if row.provider in MANAGED_PROVIDERS:
        return await _managed_kubeconfig(ctx, row, seconds)
    if row.provider == "local":
        raise ApiError(
            409,
            "KUBECONFIG_NOT_AVAILABLE",
            f"cluster {row.name} runs on the local simulator, which has no Kubernetes API server to connect to",
            {"clusterId": row.id, "provider": row.provider},
        )
    _require_active_registered(row, await registrations.get(ctx.pool, row.id))
    if not Sealer.from_settings(ctx.settings).configured:
        raise ApiError(503, "VAULT_NOT_CONFIGURED", "no encryption key is configured to store kubeconfigs")
    command = GenerateKubeconfig(
        ctx=ctx, row=row, timeout_seconds=ctx.settings.kubeconfig_timeout_seconds, duration_seconds=seconds
    )
    fingerprint = ctx.fingerprint(body.model_dump(mode="json", exclude={"credentials"}))
    return accepted_response(await enqueue(command, fingerprint))


@router.get(
    "/{clusterId}/kubeconfig",
    response_model=Envelope[Kubeconfig],
    responses={202: {"model": Envelope[Kubeconfig], "description": "still generating"}, **ERRORS},
    summary="The generated kubeconfig: 202 while generating, 200 when ready",
    description="Returns the latest kubeconfig generated for the cluster. It holds a credential, so it needs "
    "the editor role, like generating one. Once expired it is reported as EXPIRED, without the config. "
    "Managed clusters' kubeconfigs are returned by POST only and never stored: 404 here.",
)
async def get_kubeconfig(
    request: Request, clusterId: ClusterRef, principal: Editor, pool: Pool, settings: AppSettings
) -> JSONResponse:
    row = await resolve_cluster(pool, principal.organization_id, clusterId)
    record = await secrets_store.latest_kubeconfig(pool, principal.organization_id, row.id)
    if record is None:
        raise not_found("kubeconfig of cluster", clusterId)
    view = Kubeconfig(
        operationId=record.operation_id,
        clusterId=row.id,
        status=record.status,
        expiresAt=timestamp(record.expires_at),
        error=ErrorMessage(message=record.error) if record.error else None,
    )
    status_code = 200
    if record.status == "PENDING":
        status_code = 202
    elif record.status == "READY" and record.expired:
        view.status = "EXPIRED"
    elif record.status == "READY":
        # store_kubeconfig sets the sealed values with READY
        assert record.key_id is not None and record.nonce is not None and record.ciphertext is not None
        sealed = Sealed(record.key_id, bytes(record.nonce), bytes(record.ciphertext))
        view.kubeconfig = Sealer.from_settings(settings).open(sealed, record.operation_id).decode()
    body: dict[str, Any] = {
        "id": request_id_of(request),
        "status": "success",
        "message": {"PENDING": "generating", "READY": "ready", "EXPIRED": "expired", "FAILED": "failed"}[view.status],
        "data": view.model_dump(),
    }
    return JSONResponse(body, status_code=status_code)


@router.post(
    "/{clusterId}/resync",
    status_code=202,
    summary="Re-synchronize the cluster's auth configuration",
    description="A CLUSTER_RESYNC operation: the agent receives a new credential, stores it, and the old one is "
    "revoked. Needs the agent connected.",
    response_model=Envelope[OperationAccepted],
    responses=ERRORS,
)
async def resync_cluster(clusterId: ClusterRef, ctx: EditorOperation) -> JSONResponse:
    row = await resolve_cluster(ctx.pool, ctx.organization_id, clusterId)
    _require_active_registered(row, await registrations.get(ctx.pool, row.id))
    command = AgentTask(
        ctx=ctx,
        operation_type=OperationType.CLUSTER_RESYNC,
        row=row,
        timeout_seconds=ctx.settings.kubeconfig_timeout_seconds,
        accepted_message="resync accepted",
    )
    return accepted_response(await enqueue(command, ctx.fingerprint({})))
