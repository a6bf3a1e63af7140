"""CLOUD_CONNECT: publish the trust template, then wait for the customer to create the role.

The wait may last days (the customer deploys the stack when they get to it), so it is a chain
of durable timers with backoff, each followed by one check activity (one `sts:AssumeRole`);
a worker restart or deploy loses nothing and no worker slot is held while waiting. A check
that finds the role misconfigured keeps waiting too (the customer can fix the stack), but says
why in the operation's events and the account's error. The operation ends SUCCEEDED with the
account CONNECTED, or FAILED (account FAILED) when the wait runs out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.cloud_accounts import (
        CloudConnectInput,
        CloudErrorCode,
        ConnectCheckInput,
        ConnectCheckResult,
        ConnectContinuation,
        ConnectState,
        ConnectTemplateInput,
        ConnectTemplateResult,
        MarkAccountInput,
    )
    from clusterflow.contracts.operations import (
        EventInput,
        FinishInput,
        OperationError,
        OperationOutcome,
        OperationStatus,
    )
    from clusterflow.workflows.steps import OperationSteps, error_from_activity

PREPARE = "aws.prepare_connect"
CHECK = "aws.check_connect"
MARK = "aws.mark_cloud_account"


@workflow.defn(name="CloudConnect")
class CloudConnectWorkflow:
    def __init__(self) -> None:
        self._checks = 0
        self._state = "PENDING"

    @workflow.query
    def state(self) -> str:
        return f"{self._state} after {self._checks} checks"

    @workflow.run
    async def run(self, inp: CloudConnectInput) -> OperationOutcome:
        steps = OperationSteps(inp.operation_id, inp.policy)
        timeout = timedelta(minutes=2)
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=inp.policy.retry_initial_seconds),
            maximum_interval=timedelta(seconds=inp.policy.retry_max_interval_seconds),
            maximum_attempts=inp.policy.max_attempts,
        )
        try:
            if inp.continued is None:
                begun = await steps.begin()
                if not begun.proceed:
                    return OperationOutcome(inp.operation_id, begun.status)
                template: ConnectTemplateResult = await workflow.execute_activity(
                    PREPARE,
                    ConnectTemplateInput(inp.operation_id, inp.cloud_account_id),
                    result_type=ConnectTemplateResult,
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                )
                role_arn = template.role_arn
                deadline = workflow.now() + timedelta(seconds=inp.wait_seconds)
                delay = inp.check_initial_seconds
            else:
                self._checks = inp.continued.checks
                role_arn = inp.continued.role_arn
                deadline = datetime.fromisoformat(inp.continued.deadline)
                delay = inp.continued.delay_seconds
            self._state = "WAITING_FOR_ROLE"
            first_check = self._checks
            while True:
                self._checks += 1
                last: ConnectCheckResult = await workflow.execute_activity(
                    CHECK,
                    ConnectCheckInput(inp.operation_id, inp.cloud_account_id, self._checks),
                    result_type=ConnectCheckResult,
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                )
                if last.state == ConnectState.CONNECTED:
                    break
                if workflow.now() + timedelta(seconds=delay) > deadline:
                    error = OperationError(
                        CloudErrorCode.CLOUD_CONNECT_TIMED_OUT,
                        f"the role was not usable within {inp.wait_seconds:.0f}s: {last.message}",
                        retryable=True,
                    )
                    return await self._fail(steps, inp, error)
                await workflow.sleep(timedelta(seconds=delay))
                delay = min(delay * 2, inp.check_max_seconds)
                if self._checks - first_check >= inp.checks_per_run or workflow.info().is_continue_as_new_suggested():
                    continuation = ConnectContinuation(self._checks, deadline.isoformat(), delay, role_arn)
                    workflow.continue_as_new(replace(inp, continued=continuation))
        except ActivityError as err:
            return await self._fail(steps, inp, error_from_activity(err, self._state))

        self._state = "CONNECTED"
        result = {
            "connectionStatus": "CONNECTED",
            "accountId": inp.account_id,
            "roleArn": role_arn,
            "level": inp.level,
            "checks": self._checks,
        }
        await steps.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.SUCCEEDED,
                message=f"AWS account {inp.account_id} connected ({inp.level})",
                result=result,
            )
        )
        return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED, result=result)

    async def _fail(self, steps: OperationSteps, inp: CloudConnectInput, error: OperationError) -> OperationOutcome:
        self._state = "FAILED"
        await workflow.execute_activity(
            MARK,
            MarkAccountInput(inp.operation_id, inp.cloud_account_id, "FAILED", error.message),
            start_to_close_timeout=timedelta(seconds=inp.policy.record_timeout_seconds),
        )
        await steps.event(EventInput(inp.operation_id, "connect/failed", error.message, kind="log", level="ERROR"))
        await steps.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.FAILED,
                message=f"connecting AWS account {inp.account_id} failed: {error.message}",
                error=error,
                result={"connectionStatus": "FAILED", "accountId": inp.account_id},
            )
        )
        raise ApplicationError(error.message, type=error.code, non_retryable=True)
