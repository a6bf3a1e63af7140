"""Short-lived credentials for a connected GCP project or Azure subscription.

The account is the newest CONNECTED one of the organization for `clusterName` (narrowed by
project or subscription when given). As for AWS, the API never calls the cloud: a worker does
the token exchange in the `IssueCloudCredentials` workflow and seals the result to this
request's ephemeral key (`api/credentials.py`). Tokens are returned once, never stored or
logged, and the responses carry `Cache-Control: no-store`. A cloud that refuses the exchange
(the customer removed the federation) answers 502 `CLOUD_CREDENTIALS_FAILED`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clusterflow.api import credentials
from clusterflow.api.deps import Admin, AppSettings, Pool, Temporal
from clusterflow.api.errors import ApiError, request_id_of
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.schemas.federated_credentials import (
    AzureCredentials,
    AzureCredentialsRequest,
    GcpCredentials,
    GcpCredentialsRequest,
)
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.records import federated_accounts
from clusterflow.records.federated_accounts import FederatedAccountRow
from clusterflow.settings import Settings

router = APIRouter(prefix="/v1/cloud-credentials", tags=["cloud credentials"])

# What the worker's refusal means to the client: the federation is gone (502, the cloud
# refused), or the account stopped being connected after we read it (404, as if never found).
REFUSALS: dict[str, int] = {
    CloudErrorCode.CLOUD_CREDENTIALS_FAILED: 502,
    CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED: 404,
}


def _not_connected(provider: str, cluster_name: str) -> ApiError:
    return ApiError(
        404,
        CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
        f"no connected {provider} account for cluster {cluster_name}; connect one with "
        f"POST /v1/cloud-accounts/{provider}",
    )


async def _account(
    pool: Pool, org: str, provider: str, cluster_name: str, match: dict[str, Any]
) -> FederatedAccountRow:
    row = await federated_accounts.latest_connected(pool, org, provider, cluster_name)
    if row is None or any(value and row.params.get(key) != value for key, value in match.items()):
        raise _not_connected(provider, cluster_name)
    return row


async def _issue(
    temporal: Temporal, settings: Settings, provider: str, org: str, row: FederatedAccountRow, duration_seconds: int
) -> dict[str, Any]:
    return await credentials.issue(
        temporal,
        settings,
        provider=provider,
        organization_id=org,
        cloud_account_id=row.id,
        duration_seconds=duration_seconds,
        refusals=REFUSALS,
    )


def _issued(request: Request, data: Any) -> JSONResponse:
    envelope = Envelope[Any](id=request_id_of(request), message="credentials issued", data=data)
    return JSONResponse(envelope.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


@router.post("/gcp", response_model=Envelope[GcpCredentials], responses=ERRORS, summary="GCP access token")
async def gcp_credentials(
    request: Request,
    body: GcpCredentialsRequest,
    principal: Admin,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
) -> JSONResponse:
    org = principal.organization_id
    row = await _account(pool, org, "gcp", body.clusterName, {"targetProjectId": body.targetProjectId})
    # `duration` is Go nanoseconds, as in the reference; the worker caps it to what GCP allows.
    requested = -(-body.duration // 1_000_000_000) if body.duration else 0
    document = await _issue(temporal, settings, "gcp", org, row, requested)
    return _issued(request, GcpCredentials.model_validate(document))


@router.post("/azure", response_model=Envelope[AzureCredentials], responses=ERRORS, summary="Azure access token")
async def azure_credentials(
    request: Request,
    body: AzureCredentialsRequest,
    principal: Admin,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
) -> JSONResponse:
    org = principal.organization_id
    row = await _account(
        pool,
        org,
        "azure",
        body.clusterName,
        {"subscriptionId": body.subscriptionId, "resourceGroup": body.resourceGroup},
    )
    # Entra ID decides an access token's lifetime; `duration` is accepted for the reference's shape.
    document = await _issue(temporal, settings, "azure", org, row, 0)
    return _issued(request, AzureCredentials.model_validate(document))
