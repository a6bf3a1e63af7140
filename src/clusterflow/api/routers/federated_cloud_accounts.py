"""Cloud connect for GCP and Azure: generate the setup script, record the account, start the
CLOUD_CONNECT operation that waits until federation works.

The POST answers 202 with the script at once (the reference's shape: `id`, `status`,
`cloudShellScript`/`setupScript` and their URLs); `id` is the operation ID, so the operation
endpoints show its progress too. The account row is written in the operation's transaction
(`enqueue`'s `prepare`), so an idempotent replay finds the first request's account and answers
with it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from clusterflow import oidc
from clusterflow.api.cloud_scripts import (
    CALLBACK_TOKEN_PLACEHOLDER,
    azure_script,
    gcp_identity,
    gcp_script,
)
from clusterflow.api.deps import Admin, AppSettings, Pool, Temporal, Viewer
from clusterflow.api.enqueue import OperationPlan, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.routers.clusters import execution_policy
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.schemas.federated_cloud_accounts import (
    AccountError,
    AzureCallback,
    AzureCloudAccount,
    AzureConnectRequest,
    CallbackAccepted,
    GcpCloudAccount,
    GcpConnectRequest,
)
from clusterflow.catalog import CATALOGS
from clusterflow.contracts.operations import OperationType
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import federated_accounts, idempotency
from clusterflow.records.db import Conn, Record
from clusterflow.settings import Settings
from clusterflow.workflows.federated_connect import (
    WORKFLOW_TYPE,
    AccountStatus,
    FederatedConnectInput,
)

router = APIRouter(prefix="/v1/cloud-accounts", tags=["cloud accounts"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)]
SCRIPT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the setup script"}
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _error(row: Record) -> AccountError | None:
    return AccountError(message=row["error"]) if row["error"] else None


def _script_url(settings: Settings, provider: str, account_id: str) -> str:
    return f"{settings.api_url}/v1/cloud-accounts/{provider}/{account_id}/script"


def _azure_script(settings: Settings, row: Record) -> str:
    return str(row["script"]).replace(CALLBACK_TOKEN_PLACEHOLDER, oidc.callback_token(settings, row["id"]))


def gcp_view(settings: Settings, row: Record) -> GcpCloudAccount:
    params, identity = row["params"], row["identity"]
    return GcpCloudAccount(
        id=row["id"],
        operationId=row["id"],
        status=row["status"],
        cloudShellScript=row["script"],
        cloudShellScriptURL=_script_url(settings, "gcp", row["id"]),
        error=_error(row),
        clusterName=row["cluster_name"],
        level=row["level"],
        targetProjectId=params["targetProjectId"],
        targetProjectNumber=params["targetProjectNumber"],
        targetRegion=params.get("targetRegion"),
        serviceAccountEmail=identity["serviceAccountEmail"],
        createdAt=row["created_at"].isoformat(),
        connectedAt=_iso(row["connected_at"]),
    )


def azure_view(settings: Settings, row: Record) -> AzureCloudAccount:
    params, identity = row["params"], row["identity"]
    return AzureCloudAccount(
        id=row["id"],
        operationId=row["id"],
        status=row["status"],
        setupScript=_azure_script(settings, row),
        setupScriptURL=_script_url(settings, "azure", row["id"]),
        error=_error(row),
        clusterName=row["cluster_name"],
        level=row["level"],
        subscriptionId=params["subscriptionId"],
        resourceGroup=params["resourceGroup"],
        targetRegion=params.get("targetRegion"),
        tenantId=identity.get("tenantId"),
        clientId=identity.get("clientId"),
        createdAt=row["created_at"].isoformat(),
        connectedAt=_iso(row["connected_at"]),
    )


def _check_region(provider: str, region: str | None) -> None:
    if region is not None and CATALOGS[provider].region(region) is None:
        message = f"region {region} is not offered by provider {provider}"
        raise ApiError(
            422, "VALIDATION_FAILED", f"targetRegion: {message}", [{"field": "targetRegion", "message": message}]
        )


async def _refuse_if_connected(pool: Pool, org: str, provider: str, cluster_name: str, force: bool) -> None:
    if force:
        return
    existing = await federated_accounts.latest_connected(pool, org, provider, cluster_name)
    if existing is not None:
        raise ApiError(
            409,
            "CLOUD_ACCOUNT_CONNECTED",
            f"{provider} account {existing['id']} is already connected for cluster {cluster_name}; "
            "set forceUpdate to connect again",
            {"cloudAccountId": existing["id"]},
        )


async def _start(
    request: Request,
    pool: Pool,
    temporal: Temporal,
    settings: Settings,
    principal: Any,
    provider: str,
    body: dict[str, Any],
    cluster_name: str,
    level: str,
    identity: dict[str, Any],
    script: str,
    operation_id: str,
    idempotency_key: str | None,
) -> str:
    """Enqueue the CLOUD_CONNECT operation; returns its ID (the first request's, on a replay)."""
    connect = FederatedConnectInput(
        operation_id=operation_id,
        organization_id=principal.organization_id,
        account_id=operation_id,
        provider=provider,
        timeout_seconds=settings.cloud_connect_timeout_seconds,
        poll_seconds=settings.cloud_connect_poll_seconds,
        policy=execution_policy(settings),
    )

    async def insert_account(conn: Conn) -> None:
        await federated_accounts.insert(
            conn,
            account_id=operation_id,
            organization_id=principal.organization_id,
            provider=provider,
            cluster_name=cluster_name,
            level=level,
            status=AccountStatus.PENDING,
            params=body,
            identity=identity,
            script=script,
        )

    plan = OperationPlan(
        operation_id=operation_id,
        operation_type=OperationType.CLOUD_CONNECT,
        workflow_type=WORKFLOW_TYPE,
        workflow_input=asdict(connect),
        cluster_id=None,
        cluster_name=cluster_name,
        accepted_message=f"{provider} cloud connect accepted",
        prepare=insert_account,
        metadata={"provider": provider},
    )
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, body)
    response = await enqueue(
        request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint
    )
    return str(json.loads(bytes(response.body))["data"]["operationId"])


def _accepted(request: Request, message: str, data: Any, account_id: str) -> JSONResponse:
    envelope = Envelope[Any](id=request_id_of(request), message=message, data=data)
    return JSONResponse(
        envelope.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/operations/{account_id}"}
    )


@router.post(
    "/gcp",
    status_code=202,
    response_model=Envelope[GcpCloudAccount],
    responses=ERRORS,
    summary="Connect a GCP project (Workload Identity Federation)",
    description="Generates a Cloud Shell script that creates a Workload Identity pool and provider trusting "
    "this control plane and a service account with the level's roles, and starts a CLOUD_CONNECT operation "
    "that ends CONNECTED once impersonation works.",
)
async def connect_gcp(
    request: Request,
    body: GcpConnectRequest,
    principal: Admin,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    _check_region("gcp", body.targetRegion)
    await _refuse_if_connected(pool, principal.organization_id, "gcp", body.clusterName, body.forceUpdate)
    operation_id = new_operation_id()
    identity = gcp_identity(operation_id, body.targetProjectId, body.targetProjectNumber)
    script = gcp_script(
        identity,
        oidc.issuer(settings),
        oidc.subject(principal.organization_id, operation_id),
        body.level,
        body.clusterName,
    )
    account_id = await _start(
        request,
        pool,
        temporal,
        settings,
        principal,
        "gcp",
        body.model_dump(mode="json"),
        body.clusterName,
        body.level,
        identity,
        script,
        operation_id,
        idempotency_key,
    )
    row = await federated_accounts.get(pool, principal.organization_id, "gcp", account_id)
    assert row is not None
    return _accepted(request, "gcp cloud connect accepted", gcp_view(settings, row), account_id)


@router.get("/gcp/{id}", response_model=Envelope[GcpCloudAccount], responses=ERRORS, summary="GCP connection status")
async def get_gcp(
    request: Request, id: str, principal: Viewer, pool: Pool, settings: AppSettings
) -> Envelope[GcpCloudAccount]:
    row = await federated_accounts.get(pool, principal.organization_id, "gcp", id)
    if row is None:
        raise not_found("gcp cloud account", id)
    return Envelope(id=request_id_of(request), message=f"gcp account {row['status']}", data=gcp_view(settings, row))


@router.get("/gcp/{id}/script", response_class=PlainTextResponse, responses={**SCRIPT, **ERRORS}, summary="GCP script")
async def gcp_script_text(id: str, principal: Viewer, pool: Pool) -> PlainTextResponse:
    row = await federated_accounts.get(pool, principal.organization_id, "gcp", id)
    if row is None:
        raise not_found("gcp cloud account", id)
    return PlainTextResponse(row["script"])


@router.post(
    "/azure",
    status_code=202,
    response_model=Envelope[AzureCloudAccount],
    responses=ERRORS,
    summary="Connect an Azure subscription (federated identity credential)",
    description="Generates an Azure CLI script that registers an application with a federated identity "
    "credential trusting this control plane and the level's role assignments on the resource group, and "
    "starts a CLOUD_CONNECT operation that ends CONNECTED once a token exchange works.",
)
async def connect_azure(
    request: Request,
    body: AzureConnectRequest,
    principal: Admin,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    _check_region("azure", body.targetRegion)
    await _refuse_if_connected(pool, principal.organization_id, "azure", body.clusterName, body.forceUpdate)
    operation_id = new_operation_id()
    script = azure_script(
        operation_id,
        body.subscriptionId,
        body.resourceGroup,
        oidc.issuer(settings),
        oidc.subject(principal.organization_id, operation_id),
        body.level,
        body.clusterName,
        f"{settings.api_url}/v1/cloud-accounts/azure/{operation_id}/callback",
    )
    identity = {"subscriptionId": body.subscriptionId, "resourceGroup": body.resourceGroup}
    account_id = await _start(
        request,
        pool,
        temporal,
        settings,
        principal,
        "azure",
        body.model_dump(mode="json"),
        body.clusterName,
        body.level,
        identity,
        script,
        operation_id,
        idempotency_key,
    )
    row = await federated_accounts.get(pool, principal.organization_id, "azure", account_id)
    assert row is not None
    return _accepted(request, "azure cloud connect accepted", azure_view(settings, row), account_id)


@router.get(
    "/azure/{id}", response_model=Envelope[AzureCloudAccount], responses=ERRORS, summary="Azure connection status"
)
async def get_azure(
    request: Request, id: str, principal: Viewer, pool: Pool, settings: AppSettings
) -> Envelope[AzureCloudAccount]:
    row = await federated_accounts.get(pool, principal.organization_id, "azure", id)
    if row is None:
        raise not_found("azure cloud account", id)
    return Envelope(id=request_id_of(request), message=f"azure account {row['status']}", data=azure_view(settings, row))


@router.get(
    "/azure/{id}/script", response_class=PlainTextResponse, responses={**SCRIPT, **ERRORS}, summary="Azure script"
)
async def azure_script_text(id: str, principal: Viewer, pool: Pool, settings: AppSettings) -> PlainTextResponse:
    row = await federated_accounts.get(pool, principal.organization_id, "azure", id)
    if row is None:
        raise not_found("azure cloud account", id)
    return PlainTextResponse(_azure_script(settings, row))


@router.post(
    "/azure/{id}/callback",
    response_model=Envelope[CallbackAccepted],
    responses=ERRORS,
    summary="The Azure setup script reports the application it registered",
    description="Authenticated by the per-account token embedded in the setup script, not an API key.",
)
async def azure_callback(
    request: Request, id: str, body: AzureCallback, pool: Pool, settings: AppSettings
) -> Envelope[CallbackAccepted]:
    row = await federated_accounts.get_by_id(pool, id)
    if row is None or row["provider"] != "azure":
        raise not_found("azure cloud account", id)
    if not oidc.callback_token_ok(settings, id, body.token):
        # Account IDs are unguessable ULIDs, so a 403 reveals nothing a 404 would hide.
        raise ApiError(403, "INVALID_CALLBACK_TOKEN", "the callback token does not belong to this cloud account")
    if not await federated_accounts.merge_identity(pool, id, {"tenantId": body.tenantId, "clientId": body.clientId}):
        raise ApiError(409, "CLOUD_ACCOUNT_SETTLED", f"azure cloud account {id} is no longer waiting for setup")
    return Envelope(id=request_id_of(request), message="setup reported", data=CallbackAccepted(status="RECEIVED"))
