"""Kubeconfigs of managed clusters (EKS, GKE, AKS), built on a worker and sealed to one request.

`POST /v1/clusters/{id}/kubeconfig` answers managed clusters at once, but the API never calls a
cloud: it runs the short `IssueManagedKubeconfig` workflow, whose activity here
(`<provider>.issue_kubeconfig`) asks the cloud for the endpoint and CA, mints a short-lived
token for the organization's connected account, and returns the kubeconfig sealed to the
request's ephemeral key (`clusterflow.sealing`). Temporal's history keeps ciphertext nobody can
open later; nothing is stored or logged.

The token is capped at the requested duration where the cloud allows it:

- EKS: a `k8s-aws-v1.` token (presigned STS GetCallerIdentity, `eks_token`) signed with the
  connected account's assumed role. The EKS authenticator accepts such tokens for at most
  15 minutes, so that is the ceiling.
- GKE: an access token of the connected service account (Workload Identity Federation, IAM
  Credentials `generateAccessToken` with `lifetime` = the duration, at most an hour), scoped to
  `userinfo.email` only: the API server needs the identity, and the token is then useless
  against other Google APIs (an editor receiving it gains no cloud access).
- AKS: `listClusterUserCredential` gives the server and CA; an Entra ID cluster's `kubelogin`
  exec user is replaced by a token for the AKS API server application issued to the connected
  account's federated application, as `kubelogin convert-kubeconfig` does. Entra ID chooses
  that token's lifetime (about an hour). A cluster with local accounts only has AKS's client
  certificate, which does not expire: it is refused (`KUBECONFIG_NOT_EXPIRING`), since a
  kubeconfig must expire after `duration`.

GKE and AKS clusters deployed with the platform's own credentials (no connected account) get no
kubeconfig: handing out the platform's credentials is never right. Refusals are non-retryable
`ApplicationError`s whose type the API maps to a status.
"""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import yaml
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from google.api_core import exceptions as gexc
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow import sealing
from clusterflow.activities import federation
from clusterflow.activities.providers.aws import AwsProvider, eks_kubeconfig, eks_token
from clusterflow.activities.providers.azure import AzureProvider, aks_block, classify_azure_error
from clusterflow.activities.providers.gcp import GcpProvider, classify_google_error
from clusterflow.activities.providers.phases import ProviderError
from clusterflow.records import federated_accounts
from clusterflow.settings import Settings
from clusterflow.workflows.cloud_contracts import CloudErrorCode, IssueCredentialsResult, IssueKubeconfigInput

EKS_TOKEN_MAX_SECONDS = 900  # the EKS authenticator refuses older tokens
GKE_SCOPES = ("https://www.googleapis.com/auth/userinfo.email",)
USER = "clusterflow"
KUBECONFIG_NOT_EXPIRING = "KUBECONFIG_NOT_EXPIRING"


def _refused(err: ProviderError) -> ApplicationError:
    return ApplicationError(err.message, type=str(err.code), non_retryable=not err.retryable)


def _not_connected(provider: str, cluster_name: str) -> ApplicationError:
    return ApplicationError(
        f"no connected {provider.upper()} account for cluster {cluster_name}: kubeconfigs are issued for the "
        f"connected account only. Remedy: connect it with POST /v1/cloud-accounts/{provider}",
        type=CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
        non_retryable=True,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sealed(inp: IssueKubeconfigInput, config: dict[str, Any], expiration: str) -> IssueCredentialsResult:
    document = {"kubeconfig": yaml.safe_dump(config, sort_keys=False), "expiration": expiration}
    return IssueCredentialsResult(
        sealed=sealing.seal(inp.recipient_public_key, json.dumps(document).encode()), expiration=expiration
    )


def token_kubeconfig(name: str, server: str, ca_data: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": USER, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": USER}}],
        "current-context": name,
    }


class ManagedKubeconfigActivities:
    def __init__(
        self, pool: asyncpg.Pool[Any], settings: Settings, aws: AwsProvider, gcp: GcpProvider, azure: AzureProvider
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.aws = aws
        self.gcp = gcp
        self.azure = azure

    async def _cluster(self, inp: IssueKubeconfigInput) -> asyncpg.Record:
        row: asyncpg.Record | None = await self.pool.fetchrow(
            "SELECT id, name, provider, region, state, spec FROM clusters WHERE organization_id = $1 AND id = $2",
            inp.organization_id,
            inp.cluster_id,
        )
        if row is None or row["provider"] != inp.provider or row["state"] == "DELETED":
            raise ApplicationError(
                f"cluster {inp.cluster_id} is not a live {inp.provider} cluster of this organization",
                type="CLUSTER_NOT_FOUND",
                non_retryable=True,
            )
        return row

    @staticmethod
    def _spec(row: asyncpg.Record) -> dict[str, Any]:
        document = row["spec"]
        if isinstance(document, str):
            document = json.loads(document)
        return dict((document or {}).get("spec") or document or {})

    # --- EKS --------------------------------------------------------------------------------

    @activity.defn(name="aws.issue_kubeconfig")
    async def issue_aws(self, inp: IssueKubeconfigInput) -> IssueCredentialsResult:
        row = await self._cluster(inp)
        try:
            account = await self.aws.account_for(
                row["id"], self._spec(row), row["region"], f"cf-kubeconfig-{activity.info().workflow_id}"[:64]
            )
            cluster = await self.aws.describe_cluster(account, row["name"])
        except ProviderError as err:
            raise _refused(err) from err
        if cluster is None or cluster.get("status") != "ACTIVE":
            raise ApplicationError(
                f"EKS cluster {row['name']} is {cluster.get('status') if cluster else 'missing'}",
                type=CloudErrorCode.CLOUD_RESOURCE_FAILED,
                non_retryable=True,
            )
        seconds = min(inp.duration_seconds, EKS_TOKEN_MAX_SECONDS)
        sts = account.client("sts")
        token = await asyncio.to_thread(eks_token, sts, row["name"], seconds)  # local signing, no call
        expiration = _iso(datetime.now(UTC) + timedelta(seconds=seconds))
        return _sealed(inp, eks_kubeconfig(cluster, token, USER), expiration)

    # --- GKE --------------------------------------------------------------------------------

    @activity.defn(name="gcp.issue_kubeconfig")
    async def issue_gcp(self, inp: IssueKubeconfigInput) -> IssueCredentialsResult:
        row = await self._cluster(inp)
        account = await federated_accounts.connected_for_cluster(self.pool, row["id"], "gcp")
        if account is None:
            raise _not_connected("gcp", row["name"])
        try:
            client, account_project = await self.gcp.bind(row["id"])
            project = self.gcp.project(self._spec(row), account_project)
        except ProviderError as err:
            raise _refused(err) from err
        name = f"projects/{project}/locations/{row['region']}/clusters/{row['name']}"
        try:
            cluster = await asyncio.to_thread(functools.partial(client.get_cluster, name=name, retry=None))
        except gexc.GoogleAPICallError as err:
            raise _refused(classify_google_error(err, f"describe cluster {row['name']}")) from err
        if not cluster.endpoint:
            raise ApplicationError(
                f"GKE cluster {row['name']} has no endpoint yet", type=CloudErrorCode.CLOUD_RESOURCE_FAILED
            )
        identity = dict(account["identity"])
        try:
            token = await federation.gcp_access_token(
                self.settings,
                account["organization_id"],
                account["id"],
                identity,
                federation.lifetime_seconds(inp.duration_seconds),
                GKE_SCOPES,
            )
        except federation.ExchangeFailed as err:
            raise _exchange_failed(err) from err
        config = token_kubeconfig(
            row["name"], f"https://{cluster.endpoint}", cluster.master_auth.cluster_ca_certificate, token.access_token
        )
        return _sealed(inp, config, token.expiration)

    # --- AKS --------------------------------------------------------------------------------

    @activity.defn(name="azure.issue_kubeconfig")
    async def issue_azure(self, inp: IssueKubeconfigInput) -> IssueCredentialsResult:
        row = await self._cluster(inp)
        account = await federated_accounts.connected_for_cluster(self.pool, row["id"], "azure")
        if account is None:
            raise _not_connected("azure", row["name"])
        block = aks_block(self._spec(row))
        params = dict(account["params"])
        subscription = str(block.get("subscriptionId") or params["subscriptionId"])
        group = str(block.get("resourceGroup") or params["resourceGroup"])
        client = self.azure.client(subscription, account)
        try:
            result = await asyncio.to_thread(client.managed_clusters.list_cluster_user_credentials, group, row["name"])
        except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as err:
            raise _refused(classify_azure_error(err, f"list user credentials of {row['name']}")) from err
        if not result.kubeconfigs:
            raise ApplicationError("AKS returned no user kubeconfig", type=CloudErrorCode.CLOUD_RESOURCE_FAILED)
        config = yaml.safe_load(bytes(result.kubeconfigs[0].value or b"").decode())
        users = config.get("users") or []
        if not users or not all("exec" in (u.get("user") or {}) for u in users):
            raise ApplicationError(
                f"AKS cluster {row['name']} uses local accounts, whose credential never expires: no kubeconfig is "
                "issued for it. Remedy: enable Entra ID integration (az aks update --enable-aad "
                "--enable-azure-rbac) and grant the connected application a role on the cluster",
                type=KUBECONFIG_NOT_EXPIRING,
                non_retryable=True,
            )
        try:
            token = await federation.azure_access_token(
                self.settings,
                account["organization_id"],
                account["id"],
                dict(account["identity"]),
                scope=f"{federation.AKS_API_AUDIENCE}/.default",
            )
        except federation.ExchangeFailed as err:
            raise _exchange_failed(err) from err
        for user in users:
            user["user"] = {"token": token.access_token}
        return _sealed(inp, config, token.expiration)


def _exchange_failed(err: federation.ExchangeFailed) -> ApplicationError:
    if err.retryable:
        return ApplicationError(str(err), type=CloudErrorCode.CLOUD_UNAVAILABLE)
    return ApplicationError(
        f"{err}; the account's federation may have been removed: connect again",
        type=CloudErrorCode.CLOUD_CREDENTIALS_FAILED,
        non_retryable=True,
    )
