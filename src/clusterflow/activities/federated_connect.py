"""Cloud connect for federated accounts (GCP, Azure): what their checks share.

Each cloud's check (`providers/gcp/connect.py`, `providers/azure/connect.py`) mints a
short-lived platform OIDC token for the account's subject and tries the exchange the provider
will later rely on. "Not yet" is a retryable `NOT_CONNECTED_YET` (`not_yet`), so the
workflow's retry policy is the poll loop; the tokens obtained are discarded, never stored or
logged. The account's status is the workflow's to set (`set_status`), whichever cloud it is.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.records import federated_accounts
from clusterflow.records.db import DbPool
from clusterflow.records.federated_accounts import FederatedAccountRow
from clusterflow.settings import Settings
from clusterflow.workflows.federated_connect import NOT_CONNECTED_YET, AccountStatusInput


def not_yet(message: str) -> ApplicationError:
    return ApplicationError(message, type=NOT_CONNECTED_YET, non_retryable=False)


async def account_row(pool: DbPool, account_id: str) -> FederatedAccountRow:
    row = await federated_accounts.get_by_id(pool, account_id)
    if row is None:
        raise ApplicationError(f"cloud account {account_id} does not exist", type="UNKNOWN_ACCOUNT", non_retryable=True)
    return row


class FederatedConnectCheck:
    """Base of each cloud's connect check and of `set_status`: the pool and settings they need."""

    def __init__(self, pool: DbPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings


class FederatedConnectActivities(FederatedConnectCheck):
    @activity.defn(name="federated_connect.set_status")
    async def set_status(self, inp: AccountStatusInput) -> None:
        await federated_accounts.set_status(self.pool, inp.account_id, inp.status, inp.error)
