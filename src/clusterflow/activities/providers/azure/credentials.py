"""`azure.issue_credentials`: a short-lived Entra ID token of the connected application.

A client-assertion exchange for an ARM token (Entra ID chooses its lifetime), returned with the
subscription, resource group and the AKS API audience, sealed to the requesting API process.
What the GCP and Azure credential activities share is in `activities/federated_credentials.py`.
"""

from __future__ import annotations

from temporalio import activity

from clusterflow.activities import federation
from clusterflow.activities.federated_credentials import (
    FederatedCredentialActivities,
    connected_account,
    exchange_failed,
    sealed,
)
from clusterflow.contracts.cloud_accounts import IssueCredentialsInput, IssueCredentialsResult


class AzureCredentialActivities(FederatedCredentialActivities):
    @activity.defn(name="azure.issue_credentials")
    async def issue_azure(self, inp: IssueCredentialsInput) -> IssueCredentialsResult:
        row = await connected_account(self.pool, inp, "azure")
        identity = dict(row.identity)
        try:
            token = await federation.azure_access_token(self.settings, inp.organization_id, row.id, identity)
        except federation.ExchangeFailed as err:
            raise exchange_failed(err) from err
        return sealed(
            inp,
            {
                "accessToken": token.access_token,
                "aksApiAudience": federation.AKS_API_AUDIENCE,
                "clientId": identity["clientId"],
                "expiration": token.expiration,
                "resourceGroup": row.params["resourceGroup"],
                "subscriptionId": row.params["subscriptionId"],
                "tenantId": identity["tenantId"],
            },
        )
