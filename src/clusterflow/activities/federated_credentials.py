"""Short-lived credentials for a connected GCP project or Azure subscription, issued on a worker:
what the two clouds' `<cloud>.issue_credentials` activities share.

`gcp.issue_credentials` and `azure.issue_credentials` (`providers/gcp/credentials.py`,
`providers/azure/credentials.py`) are the GCP/Azure counterparts of `aws.issue_credentials`,
run by the `IssueCloudCredentials` workflow the API starts per request. Each re-reads the
account (scoped to the requesting organization, so a stale or foreign account ID issues
nothing: `connected_account`), performs the token exchange (`activities/federation.py`) and
returns the whole credential document sealed to the requesting API process's ephemeral key
(`sealed`, `clusterflow.sealing`): Temporal's history keeps only ciphertext nobody can open
later, and the token is never logged or stored. A refusal by the cloud is a non-retryable
`CLOUD_CREDENTIALS_FAILED` (the account's federation was removed or changed); an unavailable
cloud is a retryable `CLOUD_UNAVAILABLE` (`exchange_failed`, also used by the kubeconfigs).
"""

from __future__ import annotations

import json
from typing import Any

from temporalio.exceptions import ApplicationError

from clusterflow import sealing
from clusterflow.activities import federation
from clusterflow.contracts.cloud_accounts import CloudErrorCode, IssueCredentialsInput, IssueCredentialsResult
from clusterflow.records import federated_accounts
from clusterflow.records.db import DbPool
from clusterflow.records.federated_accounts import FederatedAccountRow
from clusterflow.settings import Settings


def exchange_failed(err: federation.ExchangeFailed) -> ApplicationError:
    if err.retryable:
        return ApplicationError(str(err), type=CloudErrorCode.CLOUD_UNAVAILABLE)
    return ApplicationError(
        f"{err}; the account's federation may have been removed: connect again",
        type=CloudErrorCode.CLOUD_CREDENTIALS_FAILED,
        non_retryable=True,
    )


def sealed(inp: IssueCredentialsInput, document: dict[str, Any]) -> IssueCredentialsResult:
    sealed = sealing.seal(inp.recipient_public_key, json.dumps(document).encode())
    return IssueCredentialsResult(sealed=sealed, expiration=document["expiration"])


async def connected_account(pool: DbPool, inp: IssueCredentialsInput, provider: str) -> FederatedAccountRow:
    row = await federated_accounts.get(pool, inp.organization_id, provider, inp.cloud_account_id)
    if row is None or row.status not in federated_accounts.USABLE:  # DEGRADED stays usable, as in AWS
        raise ApplicationError(
            f"{provider} account {inp.cloud_account_id} is not connected",
            type=CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
            non_retryable=True,
        )
    return row


class FederatedCredentialActivities:
    """Base of each cloud's `issue_credentials` activity: the pool and settings it needs."""

    def __init__(self, pool: DbPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
