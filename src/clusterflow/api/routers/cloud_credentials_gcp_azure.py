"""Short-lived credentials for a connected GCP project or Azure subscription.

The account is the newest CONNECTED one of the organization for `clusterName` (narrowed by
project or subscription when given). Tokens are returned once and never stored or logged; the
responses carry `Cache-Control: no-store`. See `clusterflow.federation` for why the API itself
performs this exchange.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clusterflow import federation
from clusterflow.api.deps import Admin, AppSettings, Pool
from clusterflow.api.errors import ApiError, request_id_of
from clusterflow.api.schemas.cloud_credentials_gcp_azure import (
    AzureCredentials,
    AzureCredentialsRequest,
    GcpCredentials,
    GcpCredentialsRequest,
)
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.records import federated_accounts

router = APIRouter(prefix="/v1/cloud-credentials", tags=["cloud credentials"])


async def _account(pool: Pool, org: str, provider: str, cluster_name: str, match: dict[str, Any]) -> asyncpg.Record:
    row = await federated_accounts.latest_connected(pool, org, provider, cluster_name)
    if row is None or any(value and row["params"].get(key) != value for key, value in match.items()):
        raise ApiError(
            404,
            "CLOUD_ACCOUNT_NOT_CONNECTED",
            f"no connected {provider} account for cluster {cluster_name}; connect one with "
            f"POST /v1/cloud-accounts/{provider}",
        )
    return row


def _issued(request: Request, data: Any) -> JSONResponse:
    envelope = Envelope[Any](id=request_id_of(request), message="credentials issued", data=data)
    return JSONResponse(envelope.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


def _failed(err: federation.ExchangeFailed) -> ApiError:
    return ApiError(
        502, "CLOUD_CREDENTIALS_FAILED", f"{err}; the account's federation may have been removed: connect again"
    )


@router.post("/gcp", response_model=Envelope[GcpCredentials], responses=ERRORS, summary="GCP access token")
async def gcp_credentials(
    request: Request, body: GcpCredentialsRequest, principal: Admin, pool: Pool, settings: AppSettings
) -> JSONResponse:
    row = await _account(
        pool, principal.organization_id, "gcp", body.clusterName, {"targetProjectId": body.targetProjectId}
    )
    identity = row["identity"]
    try:
        token = await federation.gcp_access_token(
            settings, principal.organization_id, row["id"], identity, federation.lifetime_seconds(body.duration)
        )
    except federation.ExchangeFailed as err:
        raise _failed(err) from err
    return _issued(
        request,
        GcpCredentials(
            accessToken=token.access_token,
            expiration=token.expiration,
            projectId=identity["projectId"],
            serviceAccountEmail=identity["serviceAccountEmail"],
        ),
    )


@router.post("/azure", response_model=Envelope[AzureCredentials], responses=ERRORS, summary="Azure access token")
async def azure_credentials(
    request: Request, body: AzureCredentialsRequest, principal: Admin, pool: Pool, settings: AppSettings
) -> JSONResponse:
    row = await _account(
        pool,
        principal.organization_id,
        "azure",
        body.clusterName,
        {"subscriptionId": body.subscriptionId, "resourceGroup": body.resourceGroup},
    )
    identity = row["identity"]
    try:
        token = await federation.azure_access_token(settings, principal.organization_id, row["id"], identity)
    except federation.ExchangeFailed as err:
        raise _failed(err) from err
    return _issued(
        request,
        AzureCredentials(
            accessToken=token.access_token,
            aksApiAudience=federation.AKS_API_AUDIENCE,
            clientId=identity["clientId"],
            expiration=token.expiration,
            resourceGroup=row["params"]["resourceGroup"],
            subscriptionId=row["params"]["subscriptionId"],
            tenantId=identity["tenantId"],
        ),
    )
