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
import json
import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from clusterflow.api import credentials
from clusterflow.api.deps import AppSettings, Editor, Pool, Temporal, Viewer
from clusterflow.api.enqueue import OperationPlan, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.routers.clusters import execution_policy
from clusterflow.api.schemas.cloud_accounts import (
    AwsCloudAccount,
    AwsCloudAccountRequest,
    AwsCredentialsRequest,
    AwsTemporaryCredentials,
    CloudAccountError,
    duration_seconds,
)
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.views import event_view, timestamp
from clusterflow.contracts.cloud_accounts import CloudConnectInput, CloudErrorCode
from clusterflow.contracts.operations import OperationType
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import cloud_accounts, idempotency, operations
from clusterflow.records.db import Conn
from clusterflow.records.organizations import Principal
from clusterflow.settings import Settings
from clusterflow.workflows.registry import WORKFLOW_TYPES

router = APIRouter(tags=["cloud accounts"])

# How long the connect POST waits for the template URL before answering without it.
TEMPLATE_URL_WAIT_SECONDS = 10.0
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 3600, 43200
MIN_CREDENTIAL_SECONDS = 900
STEP_LIMIT = 500

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, description="Replays the first response"),
]


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
    account = account_id or (hint["account_id"] if hint else None)
    return account, region or (hint["region"] if hint else None) or default_region


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
async def connect_aws(
    request: Request,
    body: AwsCloudAccountRequest,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    _require_aws(settings)
    org = principal.organization_id
    account_id, region = await _target(
        pool, principal, body.clusterName, body.destinationAccountId, body.targetRegion, settings.aws_region
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
    operation_id = new_operation_id()
    account_row_id = cloud_accounts.cloud_account_id(org, "aws", account_id)
    role_name = cloud_accounts.aws_role_name(org)
    workflow_input = CloudConnectInput(
        operation_id=operation_id,
        organization_id=org,
        cloud_account_id=account_row_id,
        account_id=account_id,
        level=body.level,
        wait_seconds=settings.aws_connect_wait_seconds,
        check_initial_seconds=settings.aws_connect_check_initial_seconds,
        check_max_seconds=settings.aws_connect_check_max_seconds,
        policy=execution_policy(settings),
    )

    async def prepare(conn: Conn) -> None:
        existing = await cloud_accounts.lock_for_connect(conn, org, "aws", account_id)
        if existing is not None and existing["operation_status"] in {"PENDING", "RUNNING"}:
            raise ApiError(
                409,
                "CONNECT_IN_PROGRESS",
                f"AWS account {account_id} is being connected by operation {existing['operation_id']}",
                {"accountId": account_id, "activeOperationId": existing["operation_id"]},
            )
        if existing is not None and existing["status"] == cloud_accounts.CONNECTED and not body.forceUpdate:
            raise ApiError(
                409,
                "ACCOUNT_ALREADY_CONNECTED",
                f"AWS account {account_id} is already connected; pass forceUpdate=true to reconnect it",
                {"accountId": account_id, "field": "forceUpdate"},
            )
        await cloud_accounts.external_id(conn, org, "aws")
        await cloud_accounts.upsert_for_connect(
            conn,
            organization_id=org,
            provider="aws",
            account_id=account_id,
            cluster_name=body.clusterName,
            level=body.level,
            region=region,
            role_name=role_name,
            role_arn=f"arn:aws:iam::{account_id}:role/{role_name}",
            session_seconds=session_seconds,
            operation_id=operation_id,
        )

    plan = OperationPlan(
        operation_id=operation_id,
        operation_type=OperationType.CLOUD_CONNECT,
        workflow_type=WORKFLOW_TYPES[OperationType.CLOUD_CONNECT],
        workflow_input=asdict(workflow_input),
        cluster_id=None,
        cluster_name=body.clusterName,
        accepted_message="cloud connect accepted",
        prepare=prepare,
        metadata={"provider": "aws", "accountId": account_id, "cloudAccountId": account_row_id, "level": body.level},
        response_data=AwsCloudAccount(
            id=operation_id, status="PENDING", accountId=account_id, level=body.level
        ).model_dump(mode="json"),
    )
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, body.model_dump(mode="json"))
    response = await enqueue(
        request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint
    )
    if response.status_code != 202:
        return response
    answer = json.loads(bytes(response.body))
    accepted_id = answer["data"]["id"]
    deadline = time.monotonic() + TEMPLATE_URL_WAIT_SECONDS
    while True:
        view = await _account_view(pool, org, accepted_id, with_steps=False)
        if view is None or view.preSignedTargetCFTemplateURL or view.error or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    if view is not None:
        answer["data"] = view.model_dump(mode="json")
    headers = {k: v for k, v in response.headers.items() if k.lower() in {"location", "idempotent-replayed"}}
    return JSONResponse(answer, status_code=202, headers=headers)


async def _account_view(pool: Pool, org: str, operation_id: str, *, with_steps: bool) -> AwsCloudAccount | None:
    op = await operations.get(pool, org, operation_id)
    if op is None or op["operation_type"] != OperationType.CLOUD_CONNECT:
        return None
    row = await cloud_accounts.get_for_org(pool, org, (op["metadata"] or {}).get("cloudAccountId", ""))
    current = row is not None and row["operation_id"] == operation_id
    result = op["result"] or {}
    # The status of this connection attempt; once it succeeded, the account's current one
    # (re-verification may have marked it DEGRADED since).
    if op["status"] == "PENDING":
        status = "PENDING"
    elif op["status"] == "SUCCEEDED":
        status = row["status"] if current and row is not None else result.get("connectionStatus", "CONNECTED")
    elif op["status"] in ("FAILED", "CANCELLED", "REJECTED"):
        status = "FAILED"
    else:
        status = cloud_accounts.WAITING_FOR_ROLE
    message = (op["error"] or {}).get("message") or ((row["error"] or {}).get("message") if current and row else None)
    steps = (
        [event_view(e) for e in await operations.events_after(pool, operation_id, 0, STEP_LIMIT)] if with_steps else []
    )
    return AwsCloudAccount(
        id=operation_id,
        status=status,
        preSignedTargetCFTemplateURL=row["template_url"] if current and row else None,
        error=CloudAccountError(message=message) if message else None,
        accountId=(op["metadata"] or {}).get("accountId"),
        level=(op["metadata"] or {}).get("level"),
        region=row["region"] if row else None,
        roleArn=row["role_arn"] if row else None,
        operationStatus=op["status"],
        lastVerifiedAt=timestamp(row["last_verified_at"]) if row else None,
        steps=steps,
    )


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
        cloud_account_id=row["id"],
        duration_seconds=duration,
        refusals={
            CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED: 409,
            CloudErrorCode.CLOUD_ACCESS_DENIED: 409,
        },
    )
    body_out = {
        "id": request_id_of(request),
        "status": "success",
        "message": f"credentials for AWS account {row['account_id']} valid until {payload['expiration']}",
        "data": AwsTemporaryCredentials(**payload).model_dump(),
    }
    return JSONResponse(body_out, headers={"Cache-Control": "no-store"})
