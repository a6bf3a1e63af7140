"""Token exchange with a connected GCP or Azure account: the platform's OIDC token in, a
short-lived cloud access token out.

Plain HTTPS token endpoints (httpx, no cloud SDK), with the endpoints and CA settings the rest
of the worker uses:

- GCP: platform token -> STS token exchange (Workload Identity Federation) -> IAM Credentials
  `generateAccessToken` for the connected service account.
- Azure: platform token as a client assertion -> Entra ID client-credentials token for ARM.

The credential-vending activities (`credentials.py` and `kubeconfig.py` of `providers/gcp`
and `providers/azure`) and the scheduled re-verification (`federated_connect.py`) use it: the
API never calls a cloud (import-linter holds that), and the tokens they obtain travel sealed.
Shared by both clouds' federation, so it is named by what it does rather than by either cloud.
A refusal by the cloud (4xx: the federation was removed or changed) is `ExchangeFailed` with
`retryable=False` and the `step` that failed; throttling, 5xx and network errors are retryable.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from clusterflow import oidc
from clusterflow.settings import Settings

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# The Entra ID application every AKS cluster's API server trusts (the kubelogin server ID).
AKS_API_AUDIENCE = "6dae42f8-4368-4678-94ff-3960e28e3630"
MAX_LIFETIME_SECONDS = 3600
MIN_LIFETIME_SECONDS = 600
# Per request: a token endpoint slower than this is failing, and the retry (a new activity
# attempt) still fits in the time the API waits for the credentials.
TIMEOUT_SECONDS = 10.0


class ExchangeFailed(Exception):
    """The exchange failed: refused by the cloud (not retryable), or the cloud is unavailable."""

    def __init__(self, message: str, *, retryable: bool, step: str = "token exchange") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.step = step
        """Which part of the federation failed: token exchange, impersonation, subscription read."""


@dataclass
class IssuedToken:
    access_token: str
    expiration: str


def lifetime_seconds(requested_seconds: int) -> int:
    """Clouds cap federated tokens at an hour; 0 (nothing asked) means the longest."""
    if requested_seconds <= 0:
        return MAX_LIFETIME_SECONDS
    return max(MIN_LIFETIME_SECONDS, min(MAX_LIFETIME_SECONDS, requested_seconds))


def _detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    error = body.get("error")
    nested = error.get("message") if isinstance(error, dict) else None
    return str(body.get("error_description") or nested or error or "")[:500]


def _refused(response: httpx.Response, what: str, step: str = "token exchange") -> ExchangeFailed:
    retryable = response.status_code == 429 or response.status_code >= 500
    verb = "failed" if retryable else "refused"
    message = f"{what} {verb} ({response.status_code}): {_detail(response)}"
    return ExchangeFailed(message, retryable=retryable, step=step)


def _field(response: httpx.Response, key: str, what: str) -> str:
    try:
        value = response.json()[key]
    except (ValueError, KeyError, TypeError):
        value = None
    if not isinstance(value, str) or not value:
        raise ExchangeFailed(f"{what} answered without {key}", retryable=True)
    return value


async def gcp_access_token(
    settings: Settings,
    organization_id: str,
    account_id: str,
    identity: dict[str, Any],
    lifetime: int,
    scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,),
) -> IssuedToken:
    audience = identity["audience"]
    subject_token = oidc.mint(settings, oidc.subject(organization_id, account_id), f"https:{audience}")
    iam = settings.gcp_iam_credentials_endpoint.rstrip("/")
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
        try:
            sts = await client.post(
                settings.gcp_sts_endpoint,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "audience": audience,
                    "scope": CLOUD_PLATFORM_SCOPE,
                    "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "subject_token": subject_token,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                },
            )
            if sts.status_code != 200:
                raise _refused(sts, "GCP STS token exchange")
            federated = _field(sts, "access_token", "GCP STS")
            generated = await client.post(
                f"{iam}/v1/projects/-/serviceAccounts/{identity['serviceAccountEmail']}:generateAccessToken",
                headers={"Authorization": f"Bearer {federated}"},
                json={"scope": list(scopes), "lifetime": f"{lifetime}s"},
            )
        except httpx.HTTPError as err:
            raise ExchangeFailed(f"GCP token exchange failed: {type(err).__name__}", retryable=True) from err
    if generated.status_code != 200:
        raise _refused(generated, "impersonating the connected service account", "impersonation")
    what = "IAM Credentials"
    return IssuedToken(_field(generated, "accessToken", what), _field(generated, "expireTime", what))


async def azure_access_token(
    settings: Settings, organization_id: str, account_id: str, identity: dict[str, Any], scope: str | None = None
) -> IssuedToken:
    """An Entra ID token for ARM, or for `scope` (such as the AKS API server's `<id>/.default`)."""
    assertion = oidc.mint(settings, oidc.subject(organization_id, account_id), oidc.AZURE_AUDIENCE)
    authority = settings.azure_authority_host.rstrip("/")
    verify: Any = ssl.create_default_context(cafile=str(settings.azure_ca_bundle)) if settings.azure_ca_bundle else True
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, verify=verify) as client:
        try:
            response = await client.post(
                f"{authority}/{identity['tenantId']}/oauth2/v2.0/token",
                data={
                    "client_id": identity["clientId"],
                    "grant_type": "client_credentials",
                    "scope": scope or f"{settings.azure_arm_endpoint.rstrip('/')}/.default",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": assertion,
                },
            )
        except httpx.HTTPError as err:
            raise ExchangeFailed(f"Entra ID token exchange failed: {type(err).__name__}", retryable=True) from err
    if response.status_code != 200:
        raise _refused(response, "Entra ID token exchange")
    token = _field(response, "access_token", "Entra ID")
    try:
        expires_in = int(response.json().get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600
    expires = datetime.fromtimestamp(time.time() + expires_in, UTC)
    return IssuedToken(token, expires.strftime("%Y-%m-%dT%H:%M:%SZ"))


async def azure_read_subscription(settings: Settings, access_token: str, subscription_id: str) -> None:
    """Read the subscription with an ARM token: proves the app still has a role in it (the
    re-verification's second step; a token alone says nothing about role assignments)."""
    arm = settings.azure_arm_endpoint.rstrip("/")
    verify: Any = ssl.create_default_context(cafile=str(settings.azure_ca_bundle)) if settings.azure_ca_bundle else True
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, verify=verify) as client:
        try:
            response = await client.get(
                f"{arm}/subscriptions/{subscription_id}",
                params={"api-version": "2022-12-01"},
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as err:
            message = f"reading subscription {subscription_id} failed: {type(err).__name__}"
            raise ExchangeFailed(message, retryable=True, step="subscription read") from err
    if response.status_code != 200:
        raise _refused(response, f"reading subscription {subscription_id}", "subscription read")
