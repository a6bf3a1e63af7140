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
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse

from clusterflow.api import credentials
from clusterflow.api.agent_manifest import agent_manifest, install_script, manifest_yaml
from clusterflow.api.deps import AppSettings, Editor, Pool, Temporal, Viewer
from clusterflow.api.enqueue import OperationPlan, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.routers.clusters import IdempotencyKey, execution_policy
from clusterflow.api.schemas.clusters import API_VERSION
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
from clusterflow.contracts.agent import AgentTaskInput, RegisterInput
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.operations import ClusterState, ErrorCode, OperationStatus, OperationType
from clusterflow.ids import cluster_id as new_cluster_id
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import clusters, idempotency, operations, registrations, secrets_store
from clusterflow.records.db import Conn, Record
from clusterflow.records.errors import IdempotencyKeyReused
from clusterflow.records.organizations import Principal
from clusterflow.settings import Settings
from clusterflow.vault import Sealed, Sealer
from clusterflow.workflows.register import registration_instructions
from clusterflow.workflows.registry import WORKFLOW_TYPES

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


def _manifest(settings: Settings, cluster_name: str, token: str, architecture: str) -> str:
    return manifest_yaml(
        agent_manifest(
            cluster_name=cluster_name,
            url=settings.api_url,
            token=token,
            architecture=architecture,
            namespace=settings.agent_namespace,
            image=settings.agent_image,
        )
    )


async def resolve_cluster(pool: Pool, organization_id: str, ref: str) -> Record:
    """The organization's cluster by ID, or its live cluster by name; 404 otherwise."""
    row = await clusters.get(pool, organization_id, ref) if ref.startswith("cl_") else None
    if row is None:
        cluster_id = await registrations.find_live_cluster_by_name(pool, organization_id, ref)
        row = await clusters.get(pool, organization_id, cluster_id) if cluster_id else None
    if row is None:
        raise not_found("cluster", ref)
    return row


def agent_task_plan(
    principal: Principal, row: Any, settings: Settings, operation_type: str, timeout_seconds: float, message: str
) -> OperationPlan:
    """An operation whose workflow works through the cluster's agent (unregister, kubeconfig, resync)."""
    operation_id = new_operation_id()
    task = AgentTaskInput(
        operation_id=operation_id,
        organization_id=principal.organization_id,
        cluster_id=row["id"],
        cluster_name=row["name"],
        timeout_seconds=timeout_seconds,
        policy=execution_policy(settings),
    )
    return OperationPlan(
        operation_id=operation_id,
        operation_type=operation_type,
        workflow_type=WORKFLOW_TYPES[operation_type],
        workflow_input=asdict(task),
        cluster_id=row["id"],
        cluster_name=row["name"],
        accepted_message=message,
    )


def registered_cluster_delete_refused(row: Record) -> ApiError:
    """What `DELETE /v1/clusters/{id}` answers for a registered cluster (see `is_registered`):
    its resources are not ours to delete; unregistering removes the agent instead."""
    return ApiError(
        409,
        "CLUSTER_IS_REGISTERED",
        f"cluster {row['name']} is registered through an agent, not provisioned by us: "
        f"unregister it with DELETE /v1/clusters/{row['name']}/registration",
        {"clusterId": row["id"], "unregister": f"/v1/clusters/{row['name']}/registration"},
    )


def _not_registered(row: Record) -> ApiError:
    return ApiError(
        409,
        "CLUSTER_NOT_REGISTERED",
        f"cluster {row['name']} was deployed on provider {row['provider']!r}, not registered with an agent",
        {"clusterId": row["id"], "provider": row["provider"]},
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
    request: Request,
    clusterId: NewClusterName,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    body: Annotated[RegisterRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
    dryRun: Annotated[bool, Query(description="Return the manifest without persisting anything")] = False,
) -> JSONResponse:
    clusterName = clusterId
    req = body or RegisterRequest()
    if dryRun or req.dryRun:
        registration = Registration(
            operationId=None,
            clusterId=None,
            clusterName=clusterName,
            status="DRY_RUN",
            message="dry run: nothing was persisted; the token in this manifest is a placeholder",
            manifest=_manifest(settings, clusterName, DRY_RUN_TOKEN, req.architecture),
            installScript=None,
            registrationTokenExpiresAt=None,
        )
        return JSONResponse(
            {"id": request_id_of(request), "status": "success", "message": "dry run", "data": registration.model_dump()}
        )

    org = principal.organization_id
    raw_body = json.loads(await request.body() or b"null")
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, raw_body)
    existing_id = await registrations.find_live_cluster_by_name(pool, org, clusterName)
    reissue = False
    if existing_id is not None and await _is_replay(pool, org, idempotency_key, fingerprint):
        existing_id = None  # enqueue replays the first response (or refuses a reused key)
    if existing_id is not None:
        existing = await clusters.get(pool, org, existing_id)
        registration_row = await registrations.get(pool, existing_id)
        reissue = (
            existing is not None
            and registrations.is_registered(existing)
            and registration_row is not None
            and (existing["state"] == ClusterState.FAILED or registration_row["revoked_at"] is not None)
        )
        if not reissue:
            raise ApiError(
                409,
                "CLUSTER_NAME_TAKEN",
                f"a cluster named {clusterName!r} already exists",
                {"clusterName": clusterName, "clusterId": existing_id},
            )

    token = registrations.new_registration_token()
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.registration_token_ttl_seconds)
    operation_id = new_operation_id()
    cluster_id = existing_id if reissue and existing_id else new_cluster_id()
    register_input = RegisterInput(
        operation_id=operation_id,
        organization_id=org,
        cluster_id=cluster_id,
        cluster_name=clusterName,
        architecture=req.architecture,
        timeout_seconds=settings.registration_timeout_seconds,
        policy=execution_policy(settings),
    )
    document = {
        "apiVersion": API_VERSION,
        "kind": "ClusterRegistration",
        "spec": {
            "clusterName": clusterName,
            "architecture": req.architecture,
            "region": req.region,
            "kubernetesVersion": req.kubernetesVersion,
        },
    }

    async def prepare(conn: Conn) -> None:
        if reissue:
            await clusters.set_state(conn, cluster_id, ClusterState.PROVISIONING)
            await registrations.reissue(
                conn,
                cluster_id=cluster_id,
                architecture=req.architecture,
                operation_id=operation_id,
                token_hash=registrations.hash_secret(token),
                token_expires_at=expires_at,
            )
            return
        await clusters.insert(
            conn,
            cluster_id=cluster_id,
            organization_id=org,
            name=clusterName,
            provider=registrations.REGISTERED_PROVIDER,
            provisioner_type=registrations.AGENT_PROVISIONER,
            region=req.region or registrations.UNKNOWN_REGION,
            kubernetes_version=req.kubernetesVersion,
            state=ClusterState.PROVISIONING,
            spec=document,
            control_plane=None,
            worker_nodes=[],
        )
        await registrations.insert(
            conn,
            cluster_id=cluster_id,
            organization_id=org,
            architecture=req.architecture,
            operation_id=operation_id,
            token_hash=registrations.hash_secret(token),
            token_expires_at=expires_at,
        )

    async def abandon(conn: Conn) -> None:
        await clusters.set_state(conn, cluster_id, ClusterState.FAILED if reissue else ClusterState.DELETED)

    plan = OperationPlan(
        operation_id=operation_id,
        operation_type=OperationType.CLUSTER_REGISTER,
        workflow_type=WORKFLOW_TYPES[OperationType.CLUSTER_REGISTER],
        workflow_input=asdict(register_input),
        cluster_id=cluster_id,
        cluster_name=clusterName,
        accepted_message="registration accepted: apply the agent manifest in the cluster",
        prepare=prepare,
        abandon=abandon,
        metadata={"architecture": req.architecture},
    )
    accepted = await enqueue(
        request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint
    )
    envelope = json.loads(bytes(accepted.body))
    replayed = accepted.headers.get("Idempotent-Replayed") == "true"
    data = envelope["data"]
    manifest = _manifest(settings, clusterName, token, req.architecture)
    registration = Registration(
        operationId=data["operationId"],
        clusterId=data["clusterId"],
        clusterName=clusterName,
        status=data["status"],
        message=(
            "replayed: the manifest and its one-time token are shown only once; register again for a new token"
            if replayed
            else f"apply the manifest in the cluster (or run installScript) before "
            f"{timestamp(expires_at)}; the registration succeeds when the agent connects"
        ),
        manifest=None if replayed else manifest,
        installScript=None if replayed else install_script(manifest),
        registrationTokenExpiresAt=None if replayed else timestamp(expires_at),
    )
    envelope["data"] = registration.model_dump()
    headers = {k: v for k, v in accepted.headers.items() if k.lower() not in ("content-length", "content-type")}
    return JSONResponse(envelope, status_code=accepted.status_code, headers=headers)


async def _is_replay(pool: Pool, organization_id: str, key: str | None, fingerprint: bytes) -> bool:
    """Whether `enqueue` will answer from the idempotency store rather than register anew."""
    if not key:
        return False
    try:
        return await idempotency.lookup(pool, organization_id, key, fingerprint) is not None
    except IdempotencyKeyReused:
        return True


def _instructions(settings: Settings, row: Record, reg: Record, op: Record | None) -> Instructions:
    namespace = settings.agent_namespace
    check = f"kubectl -n {namespace} get pods && kubectl -n {namespace} logs deploy/clusterflow-agent"
    if reg["revoked_at"] is not None:
        return Instructions(
            message="the agent is revoked; register the cluster again to issue a new token", scriptContent=None
        )
    status = reg["connection_status"]
    if status == registrations.ConnectionStatus.CONNECTED:
        return Instructions(message="the agent is connected and heartbeating; nothing to do")
    if status == registrations.ConnectionStatus.DISCONNECTED:
        return Instructions(
            message=f"the agent stopped heartbeating (last at {timestamp(reg['last_heartbeat_at'])}); check that its "
            "pod runs and can reach the control plane",
            scriptContent=check,
        )
    if op is not None and op["status"] == OperationStatus.FAILED:
        return Instructions(message=registration_instructions(row["name"], namespace), scriptContent=check)
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
    reg = await registrations.get(pool, row["id"])
    if reg is None:
        raise _not_registered(row)
    op_id = operationId or reg["register_operation_id"]
    op = await operations.get(pool, principal.organization_id, op_id) if op_id else None
    if operationId and (op is None or op["cluster_id"] != row["id"]):
        raise not_found("operation", operationId)
    info = reg["agent_info"] or {}
    events = await registrations.connection_events(pool, row["id"])
    error = (op["error"] or {}).get("message") if op is not None else None
    status = RegistrationStatus(
        clusterId=row["id"],
        clusterName=row["name"],
        clusterState=row["state"],
        connectionStatus=reg["connection_status"],
        lastHealthCheck=timestamp(reg["last_heartbeat_at"]),
        operationId=op["id"] if op is not None else None,
        status=op["status"] if op is not None else None,
        message=(op["message"] if op is not None else None) or "",
        error=ErrorMessage(message=error) if error else None,
        instructions=_instructions(settings, row, reg, op),
        agent=AgentInfo(**{k: info.get(k) for k in AgentInfo.model_fields}) if info else None,
        revoked=reg["revoked_at"] is not None,
        connectionEvents=[
            ConnectionEvent(timestamp=timestamp(e["timestamp"]) or "", status=e["status"], message=e["message"])
            for e in events
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
    request: Request,
    clusterId: ClusterRef,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    agent_only: Annotated[
        bool, Query(alias="agent-only", description="Only tombstone the agent, keep the cluster record")
    ] = False,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    row = await resolve_cluster(pool, principal.organization_id, clusterId)
    if row["state"] == ClusterState.DELETED:
        raise not_found("cluster", clusterId)
    reg = await registrations.get(pool, row["id"])
    if reg is None:
        raise _not_registered(row)
    if agent_only:
        async with pool.acquire() as conn:
            await registrations.revoke(conn, row["id"], "agent tombstoned (agent-only unregistration)")
        return JSONResponse(
            {"id": request_id_of(request), "status": "success", "message": "agent tombstoned", "data": {}}
        )
    plan = agent_task_plan(
        principal,
        row,
        settings,
        OperationType.CLUSTER_UNREGISTER,
        settings.agent_uninstall_wait_seconds,
        "unregistration accepted",
    )
    fingerprint = idempotency.request_fingerprint(request.method, str(request.url), {})
    return await enqueue(request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint)


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


def _require_active_registered(row: Record, reg: Record | None) -> Record:
    if reg is None:
        raise _not_registered(row)
    if reg["revoked_at"] is not None or row["state"] != ClusterState.ACTIVE:
        raise ApiError(
            409,
            "CLUSTER_NOT_ACTIVE",
            f"cluster {row['name']} is {row['state']}" + (" and its agent is revoked" if reg["revoked_at"] else ""),
            {"clusterId": row["id"], "state": row["state"]},
        )
    return reg


async def _managed_kubeconfig(
    request: Request, row: Record, organization_id: str, seconds: int, temporal: Temporal, settings: Settings
) -> JSONResponse:
    """EKS, GKE, AKS: built on a worker (`activities/kubeconfig.py`), sealed to this request's key,
    returned once and never stored."""
    if row["state"] != ClusterState.ACTIVE:
        raise ApiError(
            409,
            "CLUSTER_NOT_ACTIVE",
            f"cluster {row['name']} is {row['state']}",
            {"clusterId": row["id"], "state": row["state"]},
        )
    issued = await credentials.kubeconfig(
        temporal,
        settings,
        provider=row["provider"],
        organization_id=organization_id,
        cluster_id=row["id"],
        duration_seconds=seconds,
        refusals=MANAGED_REFUSALS,
    )
    view = Kubeconfig(
        operationId=None,
        clusterId=row["id"],
        status="READY",
        kubeconfig=issued["kubeconfig"],
        expiresAt=issued["expiration"] or None,
    )
    body = {"id": request_id_of(request), "status": "success", "message": "ready", "data": view.model_dump()}
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
async def generate_kubeconfig(
    request: Request,
    clusterId: ClusterRef,
    body: KubeconfigRequest,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    row = await resolve_cluster(pool, principal.organization_id, clusterId)
    if body.clusterName != row["name"]:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"clusterName {body.clusterName!r} does not name cluster {row['id']} ({row['name']})",
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
    if row["provider"] in MANAGED_PROVIDERS:
        return await _managed_kubeconfig(request, row, principal.organization_id, seconds, temporal, settings)
    if row["provider"] == "local":
        raise ApiError(
            409,
            "KUBECONFIG_NOT_AVAILABLE",
            f"cluster {row['name']} runs on the local simulator, which has no Kubernetes API server to connect to",
            {"clusterId": row["id"], "provider": row["provider"]},
        )
    _require_active_registered(row, await registrations.get(pool, row["id"]))
    if not Sealer.from_settings(settings).configured:
        raise ApiError(503, "VAULT_NOT_CONFIGURED", "no encryption key is configured to store kubeconfigs")
    plan = agent_task_plan(
        principal,
        row,
        settings,
        OperationType.KUBECONFIG_GENERATE,
        settings.kubeconfig_timeout_seconds,
        "kubeconfig generation accepted; poll GET /kubeconfig",
    )
    operation_id = plan.operation_id

    async def prepare(conn: Conn) -> None:
        # Its foreign key to the operation is deferred: the operation row follows in this transaction.
        await secrets_store.insert_kubeconfig_request(
            conn,
            operation_id=operation_id,
            organization_id=principal.organization_id,
            cluster_id=row["id"],
            duration_seconds=seconds,
        )

    async def abandon(conn: Conn) -> None:
        await secrets_store.fail_kubeconfig(conn, operation_id, "not started: the workflow engine was unavailable")

    plan.prepare, plan.abandon, plan.metadata = prepare, abandon, {"durationSeconds": seconds}
    fingerprint = idempotency.request_fingerprint(
        request.method, request.url.path, body.model_dump(mode="json", exclude={"credentials"})
    )
    return await enqueue(request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint)


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
    record = await secrets_store.latest_kubeconfig(pool, principal.organization_id, row["id"])
    if record is None:
        raise not_found("kubeconfig of cluster", clusterId)
    view = Kubeconfig(
        operationId=record["operation_id"],
        clusterId=row["id"],
        status=record["status"],
        expiresAt=timestamp(record["expires_at"]),
        error=ErrorMessage(message=record["error"]) if record["error"] else None,
    )
    status_code = 200
    if record["status"] == "PENDING":
        status_code = 202
    elif record["status"] == "READY" and record["expired"]:
        view.status = "EXPIRED"
    elif record["status"] == "READY":
        sealed = Sealed(record["key_id"], bytes(record["nonce"]), bytes(record["ciphertext"]))
        view.kubeconfig = Sealer.from_settings(settings).open(sealed, record["operation_id"]).decode()
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
async def resync_cluster(
    request: Request,
    clusterId: ClusterRef,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    row = await resolve_cluster(pool, principal.organization_id, clusterId)
    _require_active_registered(row, await registrations.get(pool, row["id"]))
    plan = agent_task_plan(
        principal, row, settings, OperationType.CLUSTER_RESYNC, settings.kubeconfig_timeout_seconds, "resync accepted"
    )
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, {})
    return await enqueue(request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint)
