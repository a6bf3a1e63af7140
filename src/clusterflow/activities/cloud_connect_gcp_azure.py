"""Cloud connect checks for GCP and Azure: does federation with the customer's cloud work yet?

Each check mints a short-lived platform OIDC token for the account's subject and tries the
exchange the providers will later rely on: for GCP, STS token exchange against the account's
Workload Identity pool provider, then impersonation of its service account through IAM
Credentials; for Azure, a client-assertion token request for the app the setup script
registered. "Not yet" is a retryable `NOT_CONNECTED_YET`, so the workflow's retry policy is
the poll loop; the tokens obtained are discarded, never stored or logged.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow import oidc
from clusterflow.records import federated_accounts
from clusterflow.settings import Settings
from clusterflow.workflows.cloud_connect_gcp_azure import (
    NOT_CONNECTED_YET,
    AccountStatusInput,
    ConnectCheckInput,
    ConnectCheckResult,
)

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def gcp_credentials(settings: Settings, organization_id: str, account_id: str, identity: dict[str, Any]) -> Any:
    """Credentials acting as the connected service account, through federation (no key)."""
    from google.auth import identity_pool

    audience = identity["audience"]
    sub = oidc.subject(organization_id, account_id)

    class PlatformToken(identity_pool.SubjectTokenSupplier):
        def get_subject_token(self, context: Any, request: Any) -> str:
            return oidc.mint(settings, sub, f"https:{audience}")

    iam = settings.gcp_iam_credentials_endpoint.rstrip("/")
    return identity_pool.Credentials(  # type: ignore[no-untyped-call]
        audience=audience,
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",  # noqa: S106 - a token type, not a secret
        token_url=settings.gcp_sts_endpoint,
        subject_token_supplier=PlatformToken(),
        service_account_impersonation_url=(
            f"{iam}/v1/projects/-/serviceAccounts/{identity['serviceAccountEmail']}:generateAccessToken"
        ),
        scopes=[CLOUD_PLATFORM_SCOPE],
    )


def azure_credential(settings: Settings, organization_id: str, account_id: str, identity: dict[str, Any]) -> Any:
    from azure.identity import ClientAssertionCredential

    sub = oidc.subject(organization_id, account_id)
    authority = settings.azure_authority_host
    return ClientAssertionCredential(
        identity["tenantId"],
        identity["clientId"],
        lambda: oidc.mint(settings, sub, oidc.AZURE_AUDIENCE),
        authority=authority,
        disable_instance_discovery=authority.rstrip("/") != "https://login.microsoftonline.com",
        connection_verify=str(settings.azure_ca_bundle) if settings.azure_ca_bundle else True,
    )


def _not_yet(message: str) -> ApplicationError:
    return ApplicationError(message, type=NOT_CONNECTED_YET, non_retryable=False)


class FederatedConnectActivities:
    def __init__(self, pool: asyncpg.Pool[Any], settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def _account(self, account_id: str) -> asyncpg.Record:
        row = await federated_accounts.get_by_id(self.pool, account_id)
        if row is None:
            raise ApplicationError(
                f"cloud account {account_id} does not exist", type="UNKNOWN_ACCOUNT", non_retryable=True
            )
        return row

    @activity.defn(name="federated_connect.set_status")
    async def set_status(self, inp: AccountStatusInput) -> None:
        await federated_accounts.set_status(self.pool, inp.account_id, inp.status, inp.error)

    @activity.defn(name="federated_connect.check_gcp")
    async def check_gcp(self, inp: ConnectCheckInput) -> ConnectCheckResult:
        from google.auth import exceptions as gauth_exceptions
        from google.auth.transport.requests import Request

        row = await self._account(inp.account_id)
        identity = dict(row["identity"])
        credentials = gcp_credentials(self.settings, row["organization_id"], inp.account_id, identity)
        try:
            await asyncio.to_thread(credentials.refresh, Request())
        except gauth_exceptions.GoogleAuthError as err:
            raise _not_yet(f"impersonating {identity['serviceAccountEmail']} does not work yet: {err}") from err
        return ConnectCheckResult(identity={k: identity[k] for k in ("serviceAccountEmail", "projectId")})

    @activity.defn(name="federated_connect.check_azure")
    async def check_azure(self, inp: ConnectCheckInput) -> ConnectCheckResult:
        from azure.core.exceptions import ClientAuthenticationError

        row = await self._account(inp.account_id)
        identity = dict(row["identity"])
        if not identity.get("clientId") or not identity.get("tenantId"):
            raise _not_yet("the setup script has not reported the application's client ID yet")
        credential = azure_credential(self.settings, row["organization_id"], inp.account_id, identity)
        scope = f"{self.settings.azure_arm_endpoint.rstrip('/')}/.default"
        try:
            await asyncio.to_thread(credential.get_token, scope)
        except ClientAuthenticationError as err:
            raise _not_yet(
                f"token exchange for client {identity['clientId']} does not work yet: {err.message}"
            ) from err
        finally:
            await asyncio.to_thread(credential.close)
        return ConnectCheckResult(identity={k: identity[k] for k in ("tenantId", "clientId", "subscriptionId")})
