"""`azure.issue_kubeconfig`: a kubeconfig of an AKS cluster, for the connected account only.

`listClusterUserCredential` gives the server and CA; an Entra ID cluster's `kubelogin` exec user
(every cluster clusterflow creates has Entra ID and no local accounts) is replaced by a token for
the AKS API server application issued to the connected account's federated application, as
`kubelogin convert-kubeconfig` does. Entra ID chooses that token's lifetime (about an hour). A
cluster with local accounts only (one created outside clusterflow) has AKS's client certificate,
which does not expire: it is refused (`KUBECONFIG_NOT_EXPIRING`), since a kubeconfig must expire
after `duration`. What the clouds' kubeconfig activities share is in `activities/kubeconfig.py`.
"""

from __future__ import annotations

import asyncio

import yaml
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.activities import federation
from clusterflow.activities.federated_credentials import exchange_failed
from clusterflow.activities.kubeconfig import (
    KUBECONFIG_NOT_EXPIRING,
    cluster_spec,
    live_cluster,
    not_connected,
    refused,
    sealed,
)
from clusterflow.activities.providers.azure.errors import classify_azure_error
from clusterflow.activities.providers.azure.provider import AzureProvider
from clusterflow.activities.providers.azure.spec import aks_settings
from clusterflow.contracts.cloud_accounts import CloudErrorCode, IssueCredentialsResult, IssueKubeconfigInput
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.records import federated_accounts
from clusterflow.records.db import DbPool
from clusterflow.settings import Settings


class AzureKubeconfigActivities:
    def __init__(self, pool: DbPool, settings: Settings, azure: AzureProvider) -> None:
        self.pool = pool
        self.settings = settings
        self.azure = azure

    @activity.defn(name="azure.issue_kubeconfig")
    async def issue_azure(self, inp: IssueKubeconfigInput) -> IssueCredentialsResult:
        row = await live_cluster(self.pool, inp)
        account = await federated_accounts.connected_for_cluster(self.pool, row.id, "azure")
        if account is None:
            raise not_connected("azure", row.name)
        block = aks_settings(ClusterDefinition.from_spec(cluster_spec(row)))
        params = dict(account.params)
        subscription = str(block.subscription_id or params["subscriptionId"])
        group = str(block.resource_group or params["resourceGroup"])
        client = self.azure.client(subscription, account)
        try:
            result = await asyncio.to_thread(client.managed_clusters.list_cluster_user_credentials, group, row.name)
        except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as err:
            raise refused(classify_azure_error(err, f"list user credentials of {row.name}")) from err
        if not result.kubeconfigs:
            raise ApplicationError("AKS returned no user kubeconfig", type=CloudErrorCode.CLOUD_RESOURCE_FAILED)
        config = yaml.safe_load(bytes(result.kubeconfigs[0].value or b"").decode())
        users = config.get("users") or []
        if not users or not all("exec" in (u.get("user") or {}) for u in users):
            raise ApplicationError(
                f"AKS cluster {row.name} uses local accounts, whose credential never expires: no kubeconfig is "
                "issued for it. Remedy: enable Entra ID integration (az aks update --enable-aad "
                "--enable-azure-rbac) and grant the connected application a role on the cluster",
                type=KUBECONFIG_NOT_EXPIRING,
                non_retryable=True,
            )
        try:
            token = await federation.azure_access_token(
                self.settings,
                account.organization_id,
                account.id,
                dict(account.identity),
                scope=f"{federation.AKS_API_AUDIENCE}/.default",
            )
        except federation.ExchangeFailed as err:
            raise exchange_failed(err) from err
        for user in users:
            user["user"] = {"token": token.access_token}
        return sealed(inp, config, token.expiration)
