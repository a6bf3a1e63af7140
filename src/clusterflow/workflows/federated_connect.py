"""CLOUD_CONNECT for GCP and Azure: wait until the customer's setup script has made federation
work, then mark the account CONNECTED.

The API already generated the setup script (Cloud Shell for GCP, Azure CLI for Azure) and
recorded the account, so the workflow only waits. Waiting is a check activity with a retry
policy (one token exchange per attempt, `poll_seconds` apart, for at most `timeout_seconds`),
not a loop in the workflow: history stays small however long the customer takes, and the
record shows one clear outcome. Kept apart from the AWS connect workflow (a CloudFormation
stack to watch, not a token exchange), with its own workflow type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.operations import (
        ErrorCode,
        EventInput,
        ExecutionPolicy,
        FinishInput,
        OperationError,
        OperationOutcome,
        OperationStatus,
    )
    from clusterflow.workflows.steps import OperationSteps, error_from_activity

WORKFLOW_TYPE = "CloudConnectFederated"
SET_ACCOUNT_STATUS = "federated_connect.set_status"
NOT_CONNECTED_YET = "NOT_CONNECTED_YET"
CONNECT_TIMED_OUT = "CONNECT_TIMED_OUT"


class AccountStatus:
    PENDING = "PENDING"
    WAITING_FOR_SETUP = "WAITING_FOR_SETUP"
    CONNECTED = "CONNECTED"
    FAILED = "FAILED"


@dataclass
class FederatedConnectInput:
    operation_id: str
    organization_id: str
    account_id: str
    provider: str
    timeout_seconds: float = 3600.0
    poll_seconds: float = 15.0
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)


@dataclass
class AccountStatusInput:
    account_id: str
    status: str
    error: str | None = None


@dataclass
class ConnectCheckInput:
    account_id: str


@dataclass
class ConnectCheckResult:
    identity: dict[str, Any] = field(default_factory=dict)


def check_activity(provider: str) -> str:
    return f"federated_connect.check_{provider}"


@workflow.defn(name=WORKFLOW_TYPE)
class FederatedCloudConnectWorkflow:
    @workflow.run
    async def run(self, inp: FederatedConnectInput) -> OperationOutcome:
        steps = OperationSteps(inp.operation_id, inp.policy)
        begun = await steps.begin()
        if not begun.proceed:
            return OperationOutcome(inp.operation_id, begun.status)
        await self._set_status(steps, AccountStatusInput(inp.account_id, AccountStatus.WAITING_FOR_SETUP))
        await steps.event(
            EventInput(
                inp.operation_id,
                "connect/waiting",
                f"waiting for the {inp.provider} setup script to run (up to {int(inp.timeout_seconds)} s)",
                kind="progress",
                phase="CONNECT",
                progress_percentage=10,
            )
        )
        try:
            result: ConnectCheckResult = await workflow.execute_activity(
                check_activity(inp.provider),
                ConnectCheckInput(inp.account_id),
                result_type=ConnectCheckResult,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(seconds=inp.timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=inp.poll_seconds),
                    backoff_coefficient=1.0,
                    maximum_interval=timedelta(seconds=inp.poll_seconds),
                ),
            )
        except ActivityError as err:
            error = error_from_activity(err, "CONNECT")
            if error.code in (ErrorCode.PHASE_TIMED_OUT, NOT_CONNECTED_YET):
                error = OperationError(
                    CONNECT_TIMED_OUT,
                    f"the setup script did not complete within {int(inp.timeout_seconds)} s; run it and connect again",
                    retryable=True,
                )
            await self._set_status(steps, AccountStatusInput(inp.account_id, AccountStatus.FAILED, error.message))
            await steps.finish(
                FinishInput(
                    operation_id=inp.operation_id,
                    status=OperationStatus.FAILED,
                    message=f"{inp.provider} cloud connect failed: {error.message}",
                    error=error,
                )
            )
            raise ApplicationError(error.message, type=error.code, non_retryable=True) from err
        await self._set_status(steps, AccountStatusInput(inp.account_id, AccountStatus.CONNECTED))
        outcome = {"status": AccountStatus.CONNECTED, "identity": result.identity}
        await steps.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.SUCCEEDED,
                message=f"{inp.provider} account connected",
                result=outcome,
            )
        )
        return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED, result=outcome)

    @staticmethod
    async def _set_status(steps: OperationSteps, status: AccountStatusInput) -> None:
        await workflow.execute_activity(SET_ACCOUNT_STATUS, status, **steps._record_options())
