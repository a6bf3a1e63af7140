"""Short-lived credentials for a connected GCP project or Azure subscription, issued on a worker.

`gcp.issue_credentials` and `azure.issue_credentials` are the GCP/Azure counterparts of
`aws.issue_credentials`, run by the `IssueCloudCredentials` workflow the API starts per
request. Each re-reads the account (scoped to the requesting organization, so a stale or
foreign account ID issues nothing), performs the token exchange (`activities/federation.py`)
and returns the whole credential document sealed to the requesting API process's ephemeral
key (`clusterflow.sealing`): Temporal's history keeps only ciphertext nobody can open later,
and the token is never logged or stored. A refusal by the cloud is a non-retryable
`CLOUD_CREDENTIALS_FAILED` (the account's federation was removed or changed); an unavailable
cloud is a retryable `CLOUD_UNAVAILABLE`.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow import sealing
from clusterflow.activities import federation
from clusterflow.records import federated_accounts
from clusterflow.settings import Settings
from clusterflow.workflows.cloud_connect_gcp_azure import AccountStatus
from clusterflow.workflows.cloud_contracts import CloudErrorCode, IssueCredentialsInput, IssueCredentialsResult


def _failed(err: federation.ExchangeFailed) -> ApplicationError:
    if err.retryable:
        return ApplicationError(str(err), type=CloudErrorCode.CLOUD_UNAVAILABLE)
    return ApplicationError(
        f"{err}; the account's federation may have been removed: connect again",
        type=CloudErrorCode.CLOUD_CREDENTIALS_FAILED,
        non_retryable=True,
    )


def _sealed(inp: IssueCredentialsInput, document: dict[str, Any]) -> IssueCredentialsResult:
    sealed = sealing.seal(inp.recipient_public_key, json.dumps(document).encode())
    return IssueCredentialsResult(sealed=sealed, expiration=document["expiration"])


class FederatedCredentialActivities:
    def __init__(self, pool: asyncpg.Pool[Any], settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def _connected(self, inp: IssueCredentialsInput, provider: str) -> asyncpg.Record:
        row = await federated_accounts.get(self.pool, inp.organization_id, provider, inp.cloud_account_id)
        if row is None or row["status"] != AccountStatus.CONNECTED:
            raise ApplicationError(
                f"{provider} account {inp.cloud_account_id} is not connected",
                type=CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
                non_retryable=True,
            )
        return row

    @activity.defn(name="gcp.issue_credentials")
    async def issue_gcp(self, inp: IssueCredentialsInput) -> IssueCredentialsResult:
        row = await self._connected(inp, "gcp")
        identity = dict(row["identity"])
        lifetime = federation.lifetime_seconds(inp.duration_seconds)
        try:
            token = await federation.gcp_access_token(self.settings, inp.organization_id, row["id"], identity, lifetime)
        except federation.ExchangeFailed as err:
            raise _failed(err) from err
        return _sealed(
            inp,
            {
                "accessToken": token.access_token,
                "expiration": token.expiration,
                "projectId": identity["projectId"],
                "serviceAccountEmail": identity["serviceAccountEmail"],
            },
        )

    @activity.defn(name="azure.issue_credentials")
    async def issue_azure(self, inp: IssueCredentialsInput) -> IssueCredentialsResult:
        row = await self._connected(inp, "azure")
        identity = dict(row["identity"])
        try:
            token = await federation.azure_access_token(self.settings, inp.organization_id, row["id"], identity)
        except federation.ExchangeFailed as err:
            raise _failed(err) from err
        return _sealed(
            inp,
            {
                "accessToken": token.access_token,
                "aksApiAudience": federation.AKS_API_AUDIENCE,
                "clientId": identity["clientId"],
                "expiration": token.expiration,
                "resourceGroup": row["params"]["resourceGroup"],
                "subscriptionId": row["params"]["subscriptionId"],
                "tenantId": identity["tenantId"],
            },
        )
