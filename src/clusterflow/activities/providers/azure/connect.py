"""Cloud connect for Azure: does federation with the customer's subscription work yet?

The check tries the exchange the provider will later rely on: a client-assertion token request
for the app the setup script registered. What the GCP and Azure checks share is in
`activities/federated_connect.py`.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from clusterflow.activities.federated_connect import FederatedConnectCheck, account_row, not_yet
from clusterflow.activities.providers.azure.clients import azure_credential
from clusterflow.workflows.federated_connect import ConnectCheckInput, ConnectCheckResult


class AzureConnectCheck(FederatedConnectCheck):
    @activity.defn(name="federated_connect.check_azure")
    async def check_azure(self, inp: ConnectCheckInput) -> ConnectCheckResult:
        from azure.core.exceptions import ClientAuthenticationError

        row = await account_row(self.pool, inp.account_id)
        identity = dict(row.identity)
        if not identity.get("clientId") or not identity.get("tenantId"):
            raise not_yet("the setup script has not reported the application's client ID yet")
        credential = azure_credential(self.settings, row.organization_id, inp.account_id, identity)
        scope = f"{self.settings.azure_arm_endpoint.rstrip('/')}/.default"
        try:
            await asyncio.to_thread(credential.get_token, scope)
        except ClientAuthenticationError as err:
            raise not_yet(f"token exchange for client {identity['clientId']} does not work yet: {err.message}") from err
        finally:
            await asyncio.to_thread(credential.close)
        return ConnectCheckResult(identity={k: identity[k] for k in ("tenantId", "clientId", "subscriptionId")})
