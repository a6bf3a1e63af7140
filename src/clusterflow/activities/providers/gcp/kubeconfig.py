"""`gcp.issue_kubeconfig`: a kubeconfig of a GKE cluster, for the connected account only.

The token is an access token of the connected service account (Workload Identity Federation,
IAM Credentials `generateAccessToken` with `lifetime` = the duration, at most an hour), scoped
to `userinfo.email` only: the API server needs the identity, and the token is then useless
against other Google APIs (an editor receiving it gains no cloud access). What the clouds'
kubeconfig activities share is in `activities/kubeconfig.py`.
"""

from __future__ import annotations

import asyncio
import functools

from google.api_core import exceptions as gexc
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.activities import federation
from clusterflow.activities.federated_credentials import exchange_failed
from clusterflow.activities.kubeconfig import (
    cluster_spec,
    live_cluster,
    not_connected,
    refused,
    sealed,
    token_kubeconfig,
)
from clusterflow.activities.providers.gcp.errors import classify_google_error
from clusterflow.activities.providers.gcp.provider import GcpProvider
from clusterflow.activities.providers.phases import ProviderError
from clusterflow.contracts.cloud_accounts import CloudErrorCode, IssueCredentialsResult, IssueKubeconfigInput
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.records import federated_accounts
from clusterflow.records.db import DbPool
from clusterflow.settings import Settings

GKE_SCOPES = ("https://www.googleapis.com/auth/userinfo.email",)


class GcpKubeconfigActivities:
    def __init__(self, pool: DbPool, settings: Settings, gcp: GcpProvider) -> None:
        self.pool = pool
        self.settings = settings
        self.gcp = gcp

    @activity.defn(name="gcp.issue_kubeconfig")
    async def issue_gcp(self, inp: IssueKubeconfigInput) -> IssueCredentialsResult:
        row = await live_cluster(self.pool, inp)
        account = await federated_accounts.connected_for_cluster(self.pool, row.id, "gcp")
        if account is None:
            raise not_connected("gcp", row.name)
        try:
            client, account_project = await self.gcp.bind(row.id)
            project = self.gcp.project(ClusterDefinition.from_spec(cluster_spec(row)), account_project)
        except ProviderError as err:
            raise refused(err) from err
        name = f"projects/{project}/locations/{row.region}/clusters/{row.name}"
        try:
            cluster = await asyncio.to_thread(functools.partial(client.get_cluster, name=name, retry=None))
        except gexc.GoogleAPICallError as err:
            raise refused(classify_google_error(err, f"describe cluster {row.name}")) from err
        if not cluster.endpoint:
            raise ApplicationError(
                f"GKE cluster {row.name} has no endpoint yet", type=CloudErrorCode.CLOUD_RESOURCE_FAILED
            )
        identity = dict(account.identity)
        try:
            token = await federation.gcp_access_token(
                self.settings,
                account.organization_id,
                account.id,
                identity,
                federation.lifetime_seconds(inp.duration_seconds),
                GKE_SCOPES,
            )
        except federation.ExchangeFailed as err:
            raise exchange_failed(err) from err
        config = token_kubeconfig(
            row.name, f"https://{cluster.endpoint}", cluster.master_auth.cluster_ca_certificate, token.access_token
        )
        return sealed(inp, config, token.expiration)
