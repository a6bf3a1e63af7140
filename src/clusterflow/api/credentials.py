"""Cloud credentials (and managed clusters' kubeconfigs) for a request: start
`IssueCloudCredentials` (`IssueManagedKubeconfig`), wait, open the sealed result.

The API never calls a cloud, so every `POST /v1/cloud-credentials/{aws,gcp,azure}` runs one
short workflow on a worker (`workflows/cloud_accounts.py`) and waits for it, at most
`CLUSTERFLOW_CLOUD_CREDENTIALS_TIMEOUT_SECONDS`. The request makes an ephemeral key pair and
sends only the public key; the worker seals the credentials to it (`clusterflow.sealing`), so
Temporal's history and PostgreSQL never hold them in clear, and only this request, which keeps
the private key in memory, can open them. A wait that runs out (no worker, a cloud that keeps
failing) is a 503 with `Retry-After`: whatever the workflow still produces is sealed to a key
that no longer exists.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from clusterflow import sealing
from clusterflow.api.errors import ApiError
from clusterflow.contracts.cloud_accounts import IssueCredentialsInput, IssueCredentialsResult, IssueKubeconfigInput
from clusterflow.ids import new_id
from clusterflow.settings import Settings
from clusterflow.workflows.cloud_accounts import ISSUE_CREDENTIALS, ISSUE_KUBECONFIG

RETRY_AFTER_SECONDS = 5


async def issue(
    temporal: Client,
    settings: Settings,
    *,
    provider: str,
    organization_id: str,
    cloud_account_id: str,
    duration_seconds: int,
    refusals: dict[str, int],
) -> dict[str, Any]:
    """The opened credential document. A failure whose type is in `refusals` answers that status
    with the worker's message; any other failure is 503 `CREDENTIALS_UNAVAILABLE`."""
    recipient = sealing.Recipient()
    return await _run_sealed(
        temporal,
        settings,
        recipient,
        ISSUE_CREDENTIALS,
        IssueCredentialsInput(
            organization_id, cloud_account_id, duration_seconds, recipient.public_key, provider=provider
        ),
        refusals,
    )


async def kubeconfig(
    temporal: Client,
    settings: Settings,
    *,
    provider: str,
    organization_id: str,
    cluster_id: str,
    duration_seconds: int,
    refusals: dict[str, int],
) -> dict[str, Any]:
    """A managed cluster's kubeconfig, `{"kubeconfig": yaml, "expiration": iso or ""}`, built by
    the `IssueManagedKubeconfig` workflow and sealed to this request's key like credentials."""
    recipient = sealing.Recipient()
    return await _run_sealed(
        temporal,
        settings,
        recipient,
        ISSUE_KUBECONFIG,
        IssueKubeconfigInput(organization_id, cluster_id, provider, duration_seconds, recipient.public_key),
        refusals,
    )


async def _run_sealed(
    temporal: Client,
    settings: Settings,
    recipient: sealing.Recipient,
    workflow: str,
    workflow_input: Any,
    refusals: dict[str, int],
) -> dict[str, Any]:
    try:
        result: IssueCredentialsResult = await temporal.execute_workflow(
            workflow,
            workflow_input,
            id=new_id("cred"),
            task_queue=settings.task_queue,
            execution_timeout=timedelta(seconds=settings.cloud_credentials_timeout_seconds),
            result_type=IssueCredentialsResult,
        )
    except WorkflowFailureError as err:
        cause = _application_cause(err)
        if cause is not None and cause.type in refusals:
            raise ApiError(refusals[cause.type], cause.type, cause.message) from None
        raise ApiError(
            503,
            "CREDENTIALS_UNAVAILABLE",
            "credentials could not be issued; retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    except RPCError as err:
        raise ApiError(
            503,
            "ORCHESTRATOR_UNAVAILABLE",
            "the workflow engine is unavailable; retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from err
    document: dict[str, Any] = json.loads(recipient.open(result.sealed))
    return document


def _application_cause(err: WorkflowFailureError) -> ApplicationError | None:
    cause: BaseException | None = err.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    return cause
