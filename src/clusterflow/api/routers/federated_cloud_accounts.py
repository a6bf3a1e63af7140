"""Cloud connect for GCP and Azure: generate the setup script, record the account, start the
CLOUD_CONNECT operation that waits until federation works.

The POST answers 202 with the script at once (the reference's shape: `id`, `status`,
`cloudShellScript`/`setupScript` and their URLs); `id` is the operation ID, so the operation
endpoints show its progress too. The account row is written in the operation's transaction
(`enqueue`'s `prepare`), so an idempotent replay finds the first request's account and answers
with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from clusterflow import oidc
from clusterflow.api.cloud_scripts import (
    CALLBACK_TOKEN_PLACEHOLDER,
    azure_script,
    gcp_identity,
    gcp_script,
)
from clusterflow.api.commands.connect import ConnectFederated
from clusterflow.api.deps import AdminOperation, AppSettings, OperationContext, Pool, Viewer
from clusterflow.api.enqueue import accepted_response, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.schemas.cloud_accounts import CloudPermission
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
from clusterflow.contracts import cloud_permissions
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import federated_accounts
from clusterflow.records.federated_accounts import FederatedAccountRow
from clusterflow.settings import Settings

router = APIRouter(prefix="/v1/cloud-accounts", tags=["cloud accounts"])

SCRIPT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the setup script"}
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _error(row: FederatedAccountRow) -> AccountError | None:
    return AccountError(message=row.error, step=row.error_step, remedy=row.remedy) if row.error else None


def _script_url(settings: Settings, provider: str, account_id: str) -> str:
    return f"{settings.api_url}/v1/cloud-accounts/{provider}/{account_id}/script"


def _azure_script(settings: Settings, row: FederatedAccountRow) -> str:
    return str(row.script).replace(CALLBACK_TOKEN_PLACEHOLDER, oidc.callback_token(settings, row.id))


def gcp_view(settings: Settings, row: FederatedAccountRow) -> GcpCloudAccount:
    params, identity = row.params, row.identity
    return GcpCloudAccount(
        id=row.id,
        operationId=row.id,
        status=row.status,
        cloudShellScript=row.script,
        cloudShellScriptURL=_script_url(settings, "gcp", row.id),
        error=_error(row),
        clusterName=row.cluster_name,
        level=row.level,
        targetProjectId=params["targetProjectId"],
        targetProjectNumber=params["targetProjectNumber"],
        targetRegion=params.get("targetRegion"),
        serviceAccountEmail=identity["serviceAccountEmail"],
        createdAt=row.created_at.isoformat(),
        connectedAt=_iso(row.connected_at),
        lastCheckedAt=_iso(row.last_checked_at),
        permissions=[
            CloudPermission.of(
                g, [f"projects/{params['targetProjectId']}" if r == "project" else r for r in g.resources]
            )
            for g in cloud_permissions.grants("gcp", row.level, project_number=params["targetProjectNumber"])
        ],
    )


def azure_view(settings: Settings, row: FederatedAccountRow) -> AzureCloudAccount:
    params, identity = row.params, row.identity
    return AzureCloudAccount(
        id=row.id,
        operationId=row.id,
        status=row.status,
        setupScript=_azure_script(settings, row),
        setupScriptURL=_script_url(settings, "azure", row.id),
        error=_error(row),
        clusterName=row.cluster_name,
        level=row.level,
        subscriptionId=params["subscriptionId"],
        resourceGroup=params["resourceGroup"],
        targetRegion=params.get("targetRegion"),
        tenantId=identity.get("tenantId"),
        clientId=identity.get("clientId"),
        createdAt=row.created_at.isoformat(),
        connectedAt=_iso(row.connected_at),
        lastCheckedAt=_iso(row.last_checked_at),
        permissions=[
            CloudPermission.of(
                g, [f"/subscriptions/{params['subscriptionId']}/resourceGroups/{params['resourceGroup']}"]
            )
            for g in cloud_permissions.grants("azure", row.level)
        ],
    )


def _check_region(provider: str, region: str | None) -> None:
    if region is not None and CATALOGS[provider].region(region) is None:
        message = f"region {region} is not offered by provider {provider}"
        raise ApiError(
            422, "VALIDATION_FAILED", f"targetRegion: {message}", [{"field": "targetRegion", "message": message}]
        )


async def _connect(
    ctx: OperationContext,
    body: GcpConnectRequest | AzureConnectRequest,
    operation_id: str,
    identity: dict[str, Any],
    script: str,
) -> JSONResponse:
    """Enqueue the CLOUD_CONNECT operation and answer with the account it recorded (the first
    request's, on a replay)."""
    provider = "gcp" if isinstance(body, GcpConnectRequest) else "azure"
    params = body.model_dump(mode="json")
    command = ConnectFederated(
        ctx=ctx,
        operation_id=operation_id,
        provider=provider,
        params=params,
        cluster_name=body.clusterName,
        level=body.level,
        identity=identity,
        script=script,
    )
    accepted = await enqueue(command, ctx.fingerprint(params))
    row = await federated_accounts.get(ctx.pool, ctx.organization_id, provider, accepted.operation_id)
    assert row is not None
    view = gcp_view(ctx.settings, row) if provider == "gcp" else azure_view(ctx.settings, row)
    return accepted_response(accepted, view)


async def _new_account_id(ctx: OperationContext, provider: str, body: GcpConnectRequest | AzureConnectRequest) -> str:
    """The new account's ID (its operation's), once the region is offered and no account is
    connected for the cluster (unless `forceUpdate`)."""
    _check_region(provider, body.targetRegion)
    if not body.forceUpdate:
        existing = await federated_accounts.latest_connected(
            ctx.pool, ctx.organization_id, provider, body.clusterName, statuses=(federated_accounts.CONNECTED,)
        )
        if existing is not None:
            raise ApiError(
                409,
                "CLOUD_ACCOUNT_CONNECTED",
                f"{provider} account {existing.id} is already connected for cluster {body.clusterName}; "
                "set forceUpdate to connect again",
                {"cloudAccountId": existing.id},
            )
    return new_operation_id()


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
async def connect_gcp(body: GcpConnectRequest, ctx: AdminOperation) -> JSONResponse:
    operation_id = await _new_account_id(ctx, "gcp", body)
    identity = gcp_identity(operation_id, body.targetProjectId, body.targetProjectNumber)
    subject = oidc.subject(ctx.organization_id, operation_id)
    script = gcp_script(identity, oidc.issuer(ctx.settings), subject, body.level, body.clusterName)
    return await _connect(ctx, body, operation_id, identity, script)


@router.get("/gcp/{id}", response_model=Envelope[GcpCloudAccount], responses=ERRORS, summary="GCP connection status")
async def get_gcp(
    request: Request, id: str, principal: Viewer, pool: Pool, settings: AppSettings
) -> Envelope[GcpCloudAccount]:
    row = await federated_accounts.get(pool, principal.organization_id, "gcp", id)
    if row is None:
        raise not_found("gcp cloud account", id)
    return Envelope(id=request_id_of(request), message=f"gcp account {row.status}", data=gcp_view(settings, row))


@router.get("/gcp/{id}/script", response_class=PlainTextResponse, responses={**SCRIPT, **ERRORS}, summary="GCP script")
async def gcp_script_text(id: str, principal: Viewer, pool: Pool) -> PlainTextResponse:
    row = await federated_accounts.get(pool, principal.organization_id, "gcp", id)
    if row is None:
        raise not_found("gcp cloud account", id)
    return PlainTextResponse(row.script)


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
async def connect_azure(body: AzureConnectRequest, ctx: AdminOperation) -> JSONResponse:
    operation_id = await _new_account_id(ctx, "azure", body)
    script = azure_script(
        operation_id,
        body.subscriptionId,
        body.resourceGroup,
        oidc.issuer(ctx.settings),
        oidc.subject(ctx.organization_id, operation_id),
        body.level,
        body.clusterName,
        f"{ctx.settings.api_url}/v1/cloud-accounts/azure/{operation_id}/callback",
    )
    identity = {"subscriptionId": body.subscriptionId, "resourceGroup": body.resourceGroup}
    return await _connect(ctx, body, operation_id, identity, script)


@router.get(
    "/azure/{id}", response_model=Envelope[AzureCloudAccount], responses=ERRORS, summary="Azure connection status"
)
async def get_azure(
    request: Request, id: str, principal: Viewer, pool: Pool, settings: AppSettings
) -> Envelope[AzureCloudAccount]:
    row = await federated_accounts.get(pool, principal.organization_id, "azure", id)
    if row is None:
        raise not_found("azure cloud account", id)
    return Envelope(id=request_id_of(request), message=f"azure account {row.status}", data=azure_view(settings, row))


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
    if row is None or row.provider != "azure":
        raise not_found("azure cloud account", id)
    if not oidc.callback_token_ok(settings, id, body.token):
        # Account IDs are unguessable ULIDs, so a 403 reveals nothing a 404 would hide.
        raise ApiError(403, "INVALID_CALLBACK_TOKEN", "the callback token does not belong to this cloud account")
    if not await federated_accounts.merge_identity(pool, id, {"tenantId": body.tenantId, "clientId": body.clientId}):
        raise ApiError(409, "CLOUD_ACCOUNT_SETTLED", f"azure cloud account {id} is no longer waiting for setup")
    return Envelope(id=request_id_of(request), message="setup reported", data=CallbackAccepted(status="RECEIVED"))
