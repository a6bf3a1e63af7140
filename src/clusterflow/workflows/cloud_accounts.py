"""Short account workflows: issuing temporary credentials and re-verifying connected accounts.

Issuing credentials is a workflow (not an API call to a cloud) because the API never calls a
cloud; the API runs it, waits for the result with a bounded timeout, and opens it: the result
is sealed to the requesting process's ephemeral key (`clusterflow.sealing`), so the history
holds only ciphertext. One workflow type, `IssueCloudCredentials`, serves AWS, GCP and Azure:
the three differ only in the activity that talks to the cloud (`<provider>.issue_credentials`),
while the timeout, the retry policy and the sealing contract must be the same for all of them,
so one definition keeps them from drifting apart. `AwsIssueCredentials` is the older AWS-only
type, kept registered so API processes of the previous release are still served during a
rolling upgrade; nothing starts it any more.

The re-verification (AWS roles, GCP and Azure federations, side by side) runs from a Temporal
schedule the worker keeps in place (`worker/schedules.py`), so it survives restarts and runs
once per interval however many workers there are.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.cloud_accounts import (
        IssueCredentialsInput,
        IssueCredentialsResult,
        IssueKubeconfigInput,
        ReverifyInput,
        ReverifyResult,
    )


ISSUE_CREDENTIALS = "IssueCloudCredentials"
ISSUE_KUBECONFIG = "IssueManagedKubeconfig"
CREDENTIAL_PROVIDERS = ("aws", "gcp", "azure")


def issue_credentials_activity(provider: str) -> str:
    return f"{provider}.issue_credentials"


async def _issue(inp: IssueCredentialsInput) -> IssueCredentialsResult:
    if inp.provider not in CREDENTIAL_PROVIDERS:
        raise ApplicationError(
            f"no credentials for provider {inp.provider!r}", type="UNKNOWN_PROVIDER", non_retryable=True
        )
    # Refusals (not connected, federation removed) are non-retryable and surface at once; a
    # cloud that is briefly unavailable gets two more tries within the caller's wait.
    result: IssueCredentialsResult = await workflow.execute_activity(
        issue_credentials_activity(inp.provider),
        inp,
        result_type=IssueCredentialsResult,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=500)),
    )
    return result


@workflow.defn(name=ISSUE_CREDENTIALS)
class IssueCloudCredentialsWorkflow:
    @workflow.run
    async def run(self, inp: IssueCredentialsInput) -> IssueCredentialsResult:
        return await _issue(inp)


@workflow.defn(name=ISSUE_KUBECONFIG)
class IssueManagedKubeconfigWorkflow:
    """A managed cluster's kubeconfig (`<provider>.issue_kubeconfig`): same shape, timeout and
    sealing contract as the credentials, since a kubeconfig is one."""

    @workflow.run
    async def run(self, inp: IssueKubeconfigInput) -> IssueCredentialsResult:
        if inp.provider not in CREDENTIAL_PROVIDERS:
            raise ApplicationError(
                f"no kubeconfig for provider {inp.provider!r}", type="UNKNOWN_PROVIDER", non_retryable=True
            )
        result: IssueCredentialsResult = await workflow.execute_activity(
            f"{inp.provider}.issue_kubeconfig",
            inp,
            result_type=IssueCredentialsResult,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=500)),
        )
        return result


REVERIFY_ACTIVITIES = ("aws.reverify_accounts", "federated_connect.reverify_accounts")


@workflow.defn(name="AwsReverifyAccounts")
class AwsReverifyAccountsWorkflow:
    """Re-verify every connected cloud account: AWS roles, and GCP and Azure federations. The
    type keeps its first (AWS-only) name so the schedule that existing deployments keep in
    place runs it unchanged. One cloud's trouble does not stop the others' checks."""

    @workflow.run
    async def run(self, inp: ReverifyInput) -> ReverifyResult:
        # A run an older worker started (AWS only) replays without the federated check.
        names = REVERIFY_ACTIVITIES if workflow.patched("reverify-federated-accounts") else REVERIFY_ACTIVITIES[:1]
        outcomes = await asyncio.gather(
            *(
                workflow.execute_activity(
                    name,
                    inp,
                    result_type=ReverifyResult,
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
                for name in names
            ),
            return_exceptions=True,
        )
        total = ReverifyResult()
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        for outcome in outcomes:
            if isinstance(outcome, ReverifyResult):
                total.checked += outcome.checked
                total.degraded.extend(outcome.degraded)
                total.recovered.extend(outcome.recovered)
        if failed:
            raise failed[0]
        return total
