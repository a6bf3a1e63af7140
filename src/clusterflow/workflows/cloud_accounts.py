"""Short account workflows: issuing temporary credentials and re-verifying connected accounts.

Issuing credentials is a workflow (not an API call to AWS) because the API never calls a cloud;
the API runs it and waits for the result, which is sealed to the requesting process. The
re-verification runs from a Temporal schedule the worker keeps in place
(`worker/schedules.py`), so it survives restarts and runs once per interval however many
workers there are.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from clusterflow.workflows.cloud_contracts import (
        IssueCredentialsInput,
        IssueCredentialsResult,
        ReverifyInput,
        ReverifyResult,
    )


@workflow.defn(name="AwsIssueCredentials")
class AwsIssueCredentialsWorkflow:
    @workflow.run
    async def run(self, inp: IssueCredentialsInput) -> IssueCredentialsResult:
        result: IssueCredentialsResult = await workflow.execute_activity(
            "aws.issue_credentials",
            inp,
            result_type=IssueCredentialsResult,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=500)),
        )
        return result


@workflow.defn(name="AwsReverifyAccounts")
class AwsReverifyAccountsWorkflow:
    @workflow.run
    async def run(self, inp: ReverifyInput) -> ReverifyResult:
        result: ReverifyResult = await workflow.execute_activity(
            "aws.reverify_accounts",
            inp,
            result_type=ReverifyResult,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return result
