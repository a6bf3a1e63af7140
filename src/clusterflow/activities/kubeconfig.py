"""Kubeconfigs of managed clusters (EKS, GKE, AKS), built on a worker and sealed to one request:
what the three clouds' `<provider>.issue_kubeconfig` activities share.

`POST /v1/clusters/{id}/kubeconfig` answers managed clusters at once, but the API never calls a
cloud: it runs the short `IssueManagedKubeconfig` workflow, whose activity (`providers/aws`,
`providers/gcp`, `providers/azure`: `kubeconfig.py` in each) asks the cloud for the endpoint and
CA, mints a short-lived token for the organization's connected account, and returns the
kubeconfig sealed to the request's ephemeral key (`clusterflow.sealing`). Temporal's history
keeps ciphertext nobody can open later; nothing is stored or logged.

The token is capped at the requested duration where the cloud allows it; each cloud's module
says how. GKE and AKS clusters deployed with the platform's own credentials (no connected
account) get no kubeconfig: handing out the platform's credentials is never right. Refusals are
non-retryable `ApplicationError`s whose type the API maps to a status.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml
from temporalio.exceptions import ApplicationError

from clusterflow import sealing
from clusterflow.activities.providers.phases import ProviderError
from clusterflow.contracts.cloud_accounts import CloudErrorCode, IssueCredentialsResult, IssueKubeconfigInput
from clusterflow.records import clusters
from clusterflow.records.clusters import ClusterSummary
from clusterflow.records.db import DbPool

USER = "clusterflow"
KUBECONFIG_NOT_EXPIRING = "KUBECONFIG_NOT_EXPIRING"


def refused(err: ProviderError) -> ApplicationError:
    return ApplicationError(err.message, type=str(err.code), non_retryable=not err.retryable)


def not_connected(provider: str, cluster_name: str) -> ApplicationError:
    return ApplicationError(
        f"no connected {provider.upper()} account for cluster {cluster_name}: kubeconfigs are issued for the "
        f"connected account only. Remedy: connect it with POST /v1/cloud-accounts/{provider}",
        type=CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
        non_retryable=True,
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sealed(inp: IssueKubeconfigInput, config: dict[str, Any], expiration: str) -> IssueCredentialsResult:
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


async def live_cluster(pool: DbPool, inp: IssueKubeconfigInput) -> ClusterSummary:
    row = await clusters.summary(pool, inp.organization_id, inp.cluster_id)
    if row is None or row.provider != inp.provider or row.state == "DELETED":
        raise ApplicationError(
            f"cluster {inp.cluster_id} is not a live {inp.provider} cluster of this organization",
            type="CLUSTER_NOT_FOUND",
            non_retryable=True,
        )
    return row


def cluster_spec(row: ClusterSummary) -> dict[str, Any]:
    document = row.spec
    if isinstance(document, str):
        document = json.loads(document)
    return dict((document or {}).get("spec") or document or {})
