"""GKE clients and the credentials they act with: the only place endpoints and credentials are
chosen.

Credentials: when the cluster's organization has a CONNECTED GCP account for the cluster's name
(cloud connect), the phase acts as that account's service account through Workload Identity
Federation (`gcp_credentials`, no key), in its project; otherwise it uses the settings'
credentials (a static token or Application Default Credentials). The client uses the REST
transport, on the endpoint from settings, so the same code runs against GKE or the test fake.
"""

from __future__ import annotations

from typing import Any

from google.api_core.client_options import ClientOptions
from google.cloud import container_v1

from clusterflow import oidc
from clusterflow.settings import Settings

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def make_client(settings: Settings, credentials: Any = None) -> container_v1.ClusterManagerClient:
    """A GKE client on the configured endpoint: given (federated) credentials, else the
    settings' static token, else Application Default Credentials."""
    options = ClientOptions(api_endpoint=settings.gcp_endpoint) if settings.gcp_endpoint else None
    if credentials is None and settings.gcp_access_token is not None:
        from google.oauth2.credentials import Credentials

        credentials = Credentials(token=settings.gcp_access_token.get_secret_value())  # type: ignore[no-untyped-call]
    return container_v1.ClusterManagerClient(transport="rest", credentials=credentials, client_options=options)


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
