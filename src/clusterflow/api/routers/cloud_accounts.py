"""AWS cloud accounts: connect (a CLOUD_CONNECT operation), its status, temporary credentials.

The API never calls AWS. Connecting enqueues an operation whose first step publishes the
CloudFormation template; the POST waits briefly for that step so its answer can carry the
presigned URL, as the reference's does, and otherwise answers without it (the GET shows it).
Credentials are issued by a short workflow whose result is sealed to this request's ephemeral
key (`api/credentials.py`): they are returned once, with `Cache-Control: no-store`, and
never logged or stored anywhere in clear.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clusterflow.api import credentials
from clusterflow.api.commands.connect import ConnectAws
from clusterflow.api.deps import AppSettings, Editor, EditorOperation, Pool, Temporal, Viewer
from clusterflow.api.enqueue import accepted_response, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.schemas.cloud_accounts import (
    AwsCloudAccount,
    AwsCloudAccountRequest,
    AwsCredentialsRequest,
    AwsTemporaryCredentials,
    CloudAccountError,
    CloudPermission,
    duration_seconds,
)
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.views import event_view, timestamp
from clusterflow.contracts import cloud_permissions
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.operations import OperationType
from clusterflow.records import cloud_accounts, operations
from clusterflow.records.organizations import Principal
from clusterflow.settings import Settings

router = APIRouter(tags=["cloud accounts"])

# How long the connect POST waits for the template URL before answering without it.
TEMPLATE_URL_WAIT_SECONDS = 10.0
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 3600, 43200
MIN_CREDENTIAL_SECONDS = 900
STEP_LIMIT = 500


def _require_aws(settings: Settings) -> None:
    if "aws" not in settings.enabled_providers:
        raise ApiError(
            422,
            "PROVIDER_NOT_ENABLED",
            f"provider 'aws' is not enabled on this control plane (enabled: {', '.join(settings.enabled_providers)})",
            [{"field": "provider", "message": "provider not enabled", "type": "provider_not_enabled"}],
        )


async def _target(
    pool: Pool, principal: Principal, cluster_name: str, account_id: str | None, region: str | None, default_region: str
) -> tuple[str | None, str]:
    hint = await cloud_accounts.cluster_hint(pool, principal.organization_id, cluster_name)
    account = account_id or (hint.account_id if hint else None)
    return account, region or (hint.region if hint else None) or default_region


@router.post(
    "/v1/cloud-accounts/aws",
    status_code=202,
    response_model=Envelope[AwsCloudAccount],
    responses=ERRORS,
    summary="Connect an AWS account",
    description="Starts a CLOUD_CONNECT operation and answers with its ID and the presigned URL of a "
    "CloudFormation template that creates a role trusting the platform (with this organization's "
    "ExternalId and the chosen level's policy). Create a stack from it in the account; the operation "
    "ends CONNECTED once the role can be assumed and its permissions match the level.",
)
async def connect_aws(body: AwsCloudAccountRequest, ctx: EditorOperation) -> JSONResponse:
    settings = ctx.settings
    _require_aws(settings)
    account_id, region = await _target(
        ctx.pool, ctx.principal, body.clusterName, body.destinationAccountId, body.targetRegion, settings.aws_region
    )
    if account_id is None:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"destinationAccountId is required: no cluster named {body.clusterName!r} names an AWS account",
            [{"field": "destinationAccountId", "message": "required", "type": "missing"}],
        )
    requested = duration_seconds(body.duration)
    session_seconds = max(MIN_SESSION_SECONDS, min(requested or MIN_SESSION_SECONDS, MAX_SESSION_SECONDS))
    command = ConnectAws(ctx=ctx, request=body, account_id=account_id, region=region, session_seconds=session_seconds)
    accepted = await enqueue(command, ctx.fingerprint(body.model_dump(mode="json")))
    view = await _view_with_template(ctx.pool, ctx.organization_id, accepted.operation_id)
    return accepted_response(accepted, view)


async def _view_with_template(pool: Pool, org: str, operation_id: str) -> AwsCloudAccount | None:
    """The connection as it stands once its first step published the template URL (or failed),
    waiting for that at most TEMPLATE_URL_WAIT_SECONDS."""
    deadline = time.monotonic() + TEMPLATE_URL_WAIT_SECONDS
    while True:
        view = await _account_view(pool, org, operation_id, with_steps=False)
        if view is None or view.preSignedTargetCFTemplateURL or view.error or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.1)


async def _account_view(pool: Pool, org: str, operation_id: str, *, with_steps: bool) -> AwsCloudAccount | None:
    op = await operations.get(pool, org, operation_id)
    if op is None or op.operation_type != OperationType.CLOUD_CONNECT:
        return None
    row = await cloud_accounts.get_for_org(pool, org, (op.metadata or {}).get("cloudAccountId", ""))
    current = row is not None and row.operation_id == operation_id
    result = op.result or {}
    # The status of this connection attempt; once it succeeded, the account's current one
    # (re-verification may have marked it DEGRADED since).
    if op.status == "PENDING":
        status = "PENDING"
    elif op.status == "SUCCEEDED":
        status = row.status if current and row is not None else result.get("connectionStatus", "CONNECTED")
    elif op.status in ("FAILED", "CANCELLED", "REJECTED"):
        status = "FAILED"
    else:
        status = cloud_accounts.WAITING_FOR_ROLE
    message = (op.error or {}).get("message") or ((row.error or {}).get("message") if current and row else None)
    steps = (
        [event_view(e) for e in await operations.events_after(pool, operation_id, 0, STEP_LIMIT)] if with_steps else []
    )
    account_id, level = (op.metadata or {}).get("accountId"), (op.metadata or {}).get("level")
    return AwsCloudAccount(
        id=operation_id,
        status=status,
        preSignedTargetCFTemplateURL=row.template_url if current and row else None,
        error=CloudAccountError(message=message) if message else None,
        accountId=(op.metadata or {}).get("accountId"),
        level=(op.metadata or {}).get("level"),
        region=row.region if row else None,
        roleArn=row.role_arn if row else None,
        operationStatus=op.status,
        lastVerifiedAt=timestamp(row.last_verified_at) if row else None,
        permissions=aws_permissions(account_id, level, row.role_name if row else cloud_accounts.aws_role_name(org)),
        steps=steps,
    )


def aws_permissions(account_id: str | None, level: str | None, role_name: str) -> list[CloudPermission]:
    if account_id is None or level not in cloud_permissions.LEVELS:
        return []
    boundary = cloud_permissions.aws_boundary_arn(account_id, role_name)
    granted = cloud_permissions.grants("aws", str(level), account=account_id, role=role_name, boundary=boundary)
    return [CloudPermission.of(g) for g in granted]


@router.get(
    "/v1/cloud-accounts/aws/{id}",
    response_model=Envelope[AwsCloudAccount],
    responses=ERRORS,
    summary="Status of an AWS cloud account connection, with each step",
)
async def get_aws_connection(request: Request, id: str, principal: Viewer, pool: Pool) -> Envelope[AwsCloudAccount]:
    view = await _account_view(pool, principal.organization_id, id, with_steps=True)
    if view is None:
        raise not_found("cloud account operation", id)
    return Envelope(id=request_id_of(request), message=f"connection {view.status}", data=view)


@router.post(
    "/v1/cloud-credentials/aws",
    response_model=Envelope[AwsTemporaryCredentials],
    responses=ERRORS,
    summary="Temporary AWS credentials for a connected account",
    description="AssumeRole (with the organization's ExternalId) into the connected account. The duration "
    "is capped by policy. The secret is returned once and never stored.",
)
async def aws_credentials(
    request: Request,
    body: AwsCredentialsRequest,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
) -> JSONResponse:
    _require_aws(settings)
    org = principal.organization_id
    account_id, _ = await _target(
        pool, principal, body.clusterName, body.destinationAccountId, body.targetRegion, settings.aws_region
    )
    row = await cloud_accounts.find_usable(pool, org, "aws", account_id)
    if row is None:
        raise ApiError(
            409,
            CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
            f"no connected AWS account{' ' + account_id if account_id else ''}; connect it with "
            "POST /v1/cloud-accounts/aws first",
            {"field": "destinationAccountId", "accountId": account_id},
        )
    requested = duration_seconds(body.duration) or settings.aws_credentials_max_seconds
    duration = max(MIN_CREDENTIAL_SECONDS, min(requested, settings.aws_credentials_max_seconds))
    payload = await credentials.issue(
        temporal,
        settings,
        provider="aws",
        organization_id=org,
        cloud_account_id=row.id,
        duration_seconds=duration,
        refusals={
            CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED: 409,
            CloudErrorCode.CLOUD_ACCESS_DENIED: 409,
        },
    )
    body_out = {
        "id": request_id_of(request),
        "status": "success",
        "message": f"credentials for AWS account {row.account_id} valid until {payload['expiration']}",
        "data": AwsTemporaryCredentials(**payload).model_dump(),
    }
    return JSONResponse(body_out, headers={"Cache-Control": "no-store"})
