"""Short-lived cloud credentials for a connected GCP or Azure account, by token exchange.

This is the one place the API talks to a cloud, on purpose: vending credentials is a read whose
whole answer is a secret, and running it as a workflow would persist the token in Temporal
history. It changes nothing in any cloud and uses plain HTTPS token endpoints (no cloud SDK),
with the same endpoints and CA settings the workers use:

- GCP: platform token -> STS token exchange (Workload Identity Federation) -> IAM Credentials
  `generateAccessToken` for the connected service account.
- Azure: platform token as a client assertion -> Entra ID client-credentials token for ARM.
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


class ExchangeFailed(Exception):
    """The cloud refused the exchange (the account's federation was removed or changed)."""


@dataclass
class IssuedToken:
    access_token: str
    expiration: str


def lifetime_seconds(duration_ns: int | None) -> int:
    """The reference's `duration` is Go nanoseconds; clouds cap federated tokens at an hour."""
    if not duration_ns:
        return MAX_LIFETIME_SECONDS
    return max(MIN_LIFETIME_SECONDS, min(MAX_LIFETIME_SECONDS, duration_ns // 1_000_000_000))


def _refused(response: httpx.Response, what: str) -> ExchangeFailed:
    try:
        body: Any = response.json()
        detail = body.get("error_description") or (body.get("error") or {}).get("message") or body.get("error")
    except ValueError:
        detail = response.text[:200]
    return ExchangeFailed(f"{what} refused ({response.status_code}): {detail}")


async def gcp_access_token(
    settings: Settings, organization_id: str, account_id: str, identity: dict[str, Any], lifetime: int
) -> IssuedToken:
    audience = identity["audience"]
    subject_token = oidc.mint(settings, oidc.subject(organization_id, account_id), f"https:{audience}")
    iam = settings.gcp_iam_credentials_endpoint.rstrip("/")
    async with httpx.AsyncClient(timeout=30) as client:
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
        federated = sts.json()["access_token"]
        generated = await client.post(
            f"{iam}/v1/projects/-/serviceAccounts/{identity['serviceAccountEmail']}:generateAccessToken",
            headers={"Authorization": f"Bearer {federated}"},
            json={"scope": [CLOUD_PLATFORM_SCOPE], "lifetime": f"{lifetime}s"},
        )
        if generated.status_code != 200:
            raise _refused(generated, "impersonating the connected service account")
        body = generated.json()
        return IssuedToken(body["accessToken"], body["expireTime"])


async def azure_access_token(
    settings: Settings, organization_id: str, account_id: str, identity: dict[str, Any]
) -> IssuedToken:
    assertion = oidc.mint(settings, oidc.subject(organization_id, account_id), oidc.AZURE_AUDIENCE)
    authority = settings.azure_authority_host.rstrip("/")
    verify: Any = ssl.create_default_context(cafile=str(settings.azure_ca_bundle)) if settings.azure_ca_bundle else True
    async with httpx.AsyncClient(timeout=30, verify=verify) as client:
        response = await client.post(
            f"{authority}/{identity['tenantId']}/oauth2/v2.0/token",
            data={
                "client_id": identity["clientId"],
                "grant_type": "client_credentials",
                "scope": f"{settings.azure_arm_endpoint.rstrip('/')}/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
    if response.status_code != 200:
        raise _refused(response, "Entra ID token exchange")
    body = response.json()
    expires = datetime.fromtimestamp(time.time() + int(body.get("expires_in", 3600)), UTC)
    return IssuedToken(body["access_token"], expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
