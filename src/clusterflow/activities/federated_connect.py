"""Cloud connect for federated accounts (GCP, Azure): what their checks share.

Each cloud's check (`providers/gcp/connect.py`, `providers/azure/connect.py`) mints a
short-lived platform OIDC token for the account's subject and tries the exchange the provider
will later rely on. "Not yet" is a retryable `NOT_CONNECTED_YET` (`not_yet`), so the
workflow's retry policy is the poll loop; the tokens obtained are discarded, never stored or
logged. The account's status is the workflow's to set (`set_status`), whichever cloud it is.

Once connected, the same exchange is re-checked on the schedule that re-verifies AWS accounts
(`reverify_accounts`): GCP's token exchange then impersonation, Azure's token exchange then a
read of the subscription. A refusal marks the account DEGRADED with the failing step and its
remedy; a check that passes again marks it CONNECTED; cloud trouble (5xx, network) says nothing
about the trust and changes nothing until the next round.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.activities import federation
from clusterflow.activities.federation import ExchangeFailed
from clusterflow.contracts.cloud_accounts import ReverifyInput, ReverifyResult
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

    @activity.defn(name="federated_connect.reverify_accounts")
    async def reverify_accounts(self, inp: ReverifyInput) -> ReverifyResult:
        """Check every GCP and Azure account in use once: DEGRADED when broken, CONNECTED when healed."""
        result = ReverifyResult()
        for row in await federated_accounts.list_for_reverify(self.pool, inp.limit):
            activity.heartbeat(row.id)
            try:
                await self._exchange(row)
            except ExchangeFailed as err:
                if err.retryable:
                    continue
                changed = await federated_accounts.record_reverify(
                    self.pool,
                    row,
                    healthy=False,
                    step=err.step,
                    message=str(err),
                    remedy=remedy(row.provider, err.step),
                )
            else:
                changed = await federated_accounts.record_reverify(self.pool, row, healthy=True)
            result.checked += 1
            if changed == federated_accounts.DEGRADED:
                result.degraded.append(row.id)
            elif changed == federated_accounts.CONNECTED:
                result.recovered.append(row.id)
        return result

    async def _exchange(self, row: FederatedAccountRow) -> None:
        identity = dict(row.identity)
        if row.provider == "gcp":
            await federation.gcp_access_token(
                self.settings, row.organization_id, row.id, identity, federation.MIN_LIFETIME_SECONDS
            )
            return
        if not identity.get("clientId") or not identity.get("tenantId"):
            raise ExchangeFailed("the setup script never reported the application", retryable=False)
        token = await federation.azure_access_token(self.settings, row.organization_id, row.id, identity)
        await federation.azure_read_subscription(self.settings, token.access_token, str(row.params["subscriptionId"]))


_RERUN = "Run the account's setup script again (GET /v1/cloud-accounts/{provider}/{id}/script); it is safe to re-run."
_REMEDIES = {
    ("gcp", "token exchange"): "The Workload Identity pool or its OIDC provider no longer trusts clusterflow "
    "(deleted, disabled or changed).",
    ("gcp", "impersonation"): "The service account, or its roles/iam.workloadIdentityUser binding for "
    "clusterflow, is gone.",
    ("azure", "token exchange"): "The application or its federated identity credential was deleted or changed.",
    ("azure", "subscription read"): "The application lost its role assignments on the resource group, or the "
    "subscription is disabled.",
}


def remedy(provider: str, step: str) -> str:
    """What the customer should do about a failing step."""
    cause = _REMEDIES.get((provider, step), "The federation changed.")
    return f"{cause} {_RERUN}"
