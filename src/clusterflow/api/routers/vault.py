"""The self-hosted credentials vault: store, read the status of, and remove the cloud
credentials of a self-hosted cluster.

Values are sealed with AES-256-GCM (`clusterflow.vault`) before they reach the database, bound
to their organization and cluster name, and stored with the ID of the key that sealed them.
No route ever returns them, and nothing logs the request body; the fingerprint of an
idempotent request is not kept here either, as there is no operation to replay.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Request

from clusterflow.api.deps import Admin, AppSettings, Pool, Viewer
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.schemas.registration import (
    CredentialsStatus,
    CredentialsStored,
    Empty,
    SelfHostedCredentialsRequest,
)
from clusterflow.api.views import timestamp
from clusterflow.records import secrets_store
from clusterflow.vault import Sealer

router = APIRouter(prefix="/v1/self-hosted/credentials", tags=["self-hosted credentials"])

VAULT_TYPE = "platform-aes-256-gcm"

ClusterName = Annotated[
    str, Path(min_length=1, max_length=50, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", description="Cluster name")
]


def _associated(organization_id: str, cluster_name: str) -> str:
    return f"vault:{organization_id}:{cluster_name}"


@router.post(
    "",
    status_code=201,
    response_model=Envelope[CredentialsStored],
    responses=ERRORS,
    summary="Store a self-hosted cluster's cloud credentials in the encrypted vault",
    description="The values are encrypted at rest and never returned. An existing entry is replaced only with "
    "`forceUpdate` (409 otherwise).",
)
async def store_credentials(
    request: Request, body: SelfHostedCredentialsRequest, principal: Admin, pool: Pool, settings: AppSettings
) -> Envelope[CredentialsStored]:
    sealer = Sealer.from_settings(settings)
    if not sealer.configured:
        raise ApiError(503, "VAULT_NOT_CONFIGURED", "no vault encryption key is configured (CLUSTERFLOW_VAULT_KEYS)")
    org = principal.organization_id
    sealed = sealer.seal(json.dumps(body.credentials).encode(), _associated(org, body.clusterName))
    async with pool.acquire() as conn:
        try:
            await secrets_store.store_credentials(
                conn,
                organization_id=org,
                cluster_name=body.clusterName,
                provider=body.provider,
                account_id=body.accountId,
                region=body.region,
                bucket_name=body.bucketName,
                key_id=sealed.key_id,
                nonce=sealed.nonce,
                ciphertext=sealed.ciphertext,
                force_update=body.forceUpdate,
            )
        except secrets_store.CredentialsExist as err:
            raise ApiError(
                409,
                "CREDENTIALS_EXIST",
                f"credentials for {body.clusterName!r} are already stored; set forceUpdate to replace them",
                {"clusterName": body.clusterName},
            ) from err
    return Envelope(
        id=request_id_of(request),
        message="credentials stored",
        data=CredentialsStored(clusterName=body.clusterName, status="STORED"),
    )


@router.get(
    "/{clusterName}",
    response_model=Envelope[CredentialsStatus],
    responses=ERRORS,
    summary="Status of a self-hosted cluster's stored credentials (never the values)",
)
async def credentials_status(
    request: Request, clusterName: ClusterName, principal: Viewer, pool: Pool
) -> Envelope[CredentialsStatus]:
    row = await secrets_store.credentials_status(pool, principal.organization_id, clusterName)
    if row is None:
        raise not_found("credentials of cluster", clusterName)
    return Envelope(
        id=request_id_of(request),
        message="credentials status",
        data=CredentialsStatus(
            clusterName=row.cluster_name,
            provider=row.provider,
            accountId=row.account_id,
            region=row.region,
            status=row.status,
            lastValidated=timestamp(row.last_validated),
            vaultType=VAULT_TYPE,
            keyId=row.key_id,
        ),
    )


@router.delete(
    "/{clusterName}",
    response_model=Envelope[Empty],
    responses=ERRORS,
    summary="Remove a self-hosted cluster's credentials from the vault",
)
async def delete_credentials(
    request: Request, clusterName: ClusterName, principal: Admin, pool: Pool
) -> Envelope[Empty]:
    if not await secrets_store.delete_credentials(pool, principal.organization_id, clusterName):
        raise not_found("credentials of cluster", clusterName)
    return Envelope(id=request_id_of(request), message="credentials removed", data=Empty())
