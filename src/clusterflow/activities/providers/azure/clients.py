"""AKS clients and the credentials they act with: the only place endpoints and credentials are
chosen.

Credentials: when the cluster's organization has a CONNECTED Azure account for the cluster's
name (cloud connect), the phase acts as that account's application through its federated
credential (`azure_credential`), in its subscription and resource group; otherwise it uses the
settings' service principal (or DefaultAzureCredential). Endpoints (ARM, Entra ID authority)
and a CA bundle come from settings, so the same code runs against Azure, sovereign clouds,
private endpoints, or the test fake. SDK retries are off (`retry_total=0`): Temporal's retry
policy is the one retry layer, so every retry is visible as an event.
"""

from __future__ import annotations

from typing import Any

from azure.mgmt.containerservice import ContainerServiceClient

from clusterflow import oidc
from clusterflow.settings import Settings

_PUBLIC_AUTHORITY = "https://login.microsoftonline.com"


def make_credential(settings: Settings) -> Any:
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    verify = str(settings.azure_ca_bundle) if settings.azure_ca_bundle else True
    authority = settings.azure_authority_host
    if settings.azure_client_secret is not None and settings.azure_tenant_id and settings.azure_client_id:
        return ClientSecretCredential(
            settings.azure_tenant_id,
            settings.azure_client_id,
            settings.azure_client_secret.get_secret_value(),
            authority=authority,
            disable_instance_discovery=authority.rstrip("/") != _PUBLIC_AUTHORITY,
            connection_verify=verify,
        )
    return DefaultAzureCredential(authority=authority)


def make_client(settings: Settings, credential: Any, subscription_id: str) -> ContainerServiceClient:
    endpoint = settings.azure_arm_endpoint.rstrip("/")
    return ContainerServiceClient(
        credential,
        subscription_id,
        base_url=endpoint,
        credential_scopes=[f"{endpoint}/.default"],
        connection_verify=str(settings.azure_ca_bundle) if settings.azure_ca_bundle else True,
        retry_total=0,
        polling_interval=settings.azure_poll_seconds,
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
