"""Kubeconfigs of EKS clusters: the `k8s-aws-v1.` token, the kubeconfig document, and the
`aws.issue_kubeconfig` activity (see `activities/kubeconfig.py` for what the clouds share).

The token is a presigned STS GetCallerIdentity (`eks_token`) signed with the connected
account's assumed role. The EKS authenticator accepts such tokens for at most 15 minutes, so
that is the ceiling whatever duration was asked.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.activities.kubeconfig import USER, cluster_spec, iso, live_cluster, refused, sealed
from clusterflow.activities.providers.aws.provider import AwsProvider
from clusterflow.activities.providers.phases import ProviderError
from clusterflow.contracts.cloud_accounts import CloudErrorCode, IssueCredentialsResult, IssueKubeconfigInput
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.records.db import DbPool

EKS_TOKEN_MAX_SECONDS = 900  # the EKS authenticator refuses older tokens

EKS_TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (a format prefix, not a secret)
_CLUSTER_ID_HEADER = "x-k8s-aws-id"


def eks_token(sts_client: Any, cluster_name: str, expires_seconds: int = 60) -> str:
    """A bearer token for an EKS API server, as `aws eks get-token` makes it.

    A presigned STS GetCallerIdentity URL whose signature covers the `x-k8s-aws-id` header
    (the cluster name), base64url without padding, prefixed `k8s-aws-v1.`. The API server's
    authenticator replays the URL to learn who the caller is.
    """

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[_CLUSTER_ID_HEADER] = cluster_name

    events = sts_client.meta.events
    events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    try:
        url = sts_client.generate_presigned_url(
            "get_caller_identity", Params={}, ExpiresIn=expires_seconds, HttpMethod="GET"
        )
    finally:
        events.unregister("before-sign.sts.GetCallerIdentity", add_cluster_header)
    return EKS_TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def eks_kubeconfig(cluster: dict[str, Any], token: str, user: str = "clusterflow") -> dict[str, Any]:
    """A kubeconfig for a described EKS cluster (`describe_cluster()["cluster"]`)."""
    name = cluster["name"]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": cluster["endpoint"],
                    "certificate-authority-data": cluster["certificateAuthority"]["data"],
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


class AwsKubeconfigActivities:
    def __init__(self, pool: DbPool, aws: AwsProvider) -> None:
        self.pool = pool
        self.aws = aws

    @activity.defn(name="aws.issue_kubeconfig")
    async def issue_aws(self, inp: IssueKubeconfigInput) -> IssueCredentialsResult:
        row = await live_cluster(self.pool, inp)
        try:
            eks = ClusterDefinition.from_spec(cluster_spec(row)).eks
            account = await self.aws.account_for(
                row.id,
                eks.account_id if eks is not None else None,
                row.region,
                f"cf-kubeconfig-{activity.info().workflow_id}"[:64],
            )
            cluster = await self.aws.describe_cluster(account, row.name)
        except ProviderError as err:
            raise refused(err) from err
        if cluster is None or cluster.get("status") != "ACTIVE":
            raise ApplicationError(
                f"EKS cluster {row.name} is {cluster.get('status') if cluster else 'missing'}",
                type=CloudErrorCode.CLOUD_RESOURCE_FAILED,
                non_retryable=True,
            )
        seconds = min(inp.duration_seconds, EKS_TOKEN_MAX_SECONDS)
        sts = account.client("sts")
        token = await asyncio.to_thread(eks_token, sts, row.name, seconds)  # local signing, no call
        expiration = iso(datetime.now(UTC) + timedelta(seconds=seconds))
        return sealed(inp, eks_kubeconfig(cluster, token, USER), expiration)
