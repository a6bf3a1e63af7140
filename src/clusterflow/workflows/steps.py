"""Workflow-side helpers every operation workflow uses to drive its record and its phases.

Activities are referenced by name, not imported, so this module and the workflows stay free of
the I/O libraries the activity implementations import.

A phase's runs are counted here rather than by Temporal's retry policy, which cannot tell the
cloud failing from our own infrastructure failing: a run that raised (the cloud refused, or the
provider failed) spends one of the policy's `max_attempts`; a run lost to a heartbeat,
start-to-close or schedule-to-start timeout (a worker that died, Temporal away past the
heartbeat timeout), or failed because the operation's database did not answer, is re-run
without spending it, up to `max_infrastructure_retries` times and within
`phase_deadline_seconds`. Histories started before this counting replay through the old
single activity call (`workflow.patched`).

Record writes retry while the database is away, up to `record_deadline_seconds`; one the
database refuses for good (or that outlives the deadline) ends the operation FAILED with
RECORD_WRITE_FAILED, written by a last finish that retries until the database takes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from clusterflow.contracts.changes import UpdateChange
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.contracts.operations import (
    BeginInput,
    BeginResult,
    CancelRequest,
    ClusterChange,
    ClusterState,
    DecisionRecord,
    ErrorCode,
    EventInput,
    ExecutionPolicy,
    FinishInput,
    OperationError,
    OperationStatus,
    WaitForOperations,
)
from clusterflow.contracts.phase_activity import PhaseAction, PhaseInput, PhaseResult, phase_activity_name

BEGIN_OPERATION = "records.begin_operation"
FINISH_OPERATION = "records.finish_operation"
APPEND_EVENT = "records.append_event"
RECORD_DECISION = "records.record_decision"
UPDATE_CLUSTER = "records.update_cluster"
REQUEST_CANCEL = "records.request_cancel"
WAIT_FOR_OPERATIONS = "records.wait_for_operations"

# Marks histories whose phases are run by `_run_counted` (see the module docstring).
PHASE_RUNS_COUNTED = "phase-runs-counted"
# Timeouts that say our infrastructure lost the run, not that the cloud failed it.
INFRASTRUCTURE_TIMEOUTS = frozenset({TimeoutType.HEARTBEAT, TimeoutType.START_TO_CLOSE, TimeoutType.SCHEDULE_TO_START})


def lost_to_infrastructure(err: ActivityError) -> bool:
    cause = err.cause
    return isinstance(cause, TimeoutError) and cause.type in INFRASTRUCTURE_TIMEOUTS


def database_was_away(err: ActivityError) -> bool:
    """The run failed because the operation's database could not be reached (the activity
    checked that it did not answer): ours to wait out, not the cloud's."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type == ErrorCode.DATABASE_UNAVAILABLE


def record_write_failed(err: BaseException) -> bool:
    """Whether `err` is a record write that will not succeed: refused for good by the database,
    or still failing at its deadline."""
    if not isinstance(err, ActivityError) or not err.activity_type.startswith("records."):
        return False
    if err.activity_type == WAIT_FOR_OPERATIONS:  # a wait, not a write
        return False
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.type == ErrorCode.RECORD_WRITE_FAILED
    return isinstance(cause, TimeoutError)


def error_from_activity(err: ActivityError, phase: str) -> OperationError:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        code = cause.type or ErrorCode.PHASE_FAILED
        # A retryable error that still ended the phase ran out of attempts: the condition may
        # clear, so the operation is worth retrying later.
        return OperationError(code=code, message=f"{phase}: {cause.message}", retryable=not cause.non_retryable)
    if isinstance(cause, TimeoutError):
        timeout_kind = cause.type.name if cause.type else "unknown"
        return OperationError(
            code=ErrorCode.PHASE_TIMED_OUT,
            message=f"{phase}: timed out ({timeout_kind})",
            retryable=True,
        )
    return OperationError(code=ErrorCode.PHASE_FAILED, message=f"{phase}: {err}", retryable=True)


class OperationSteps:
    """The operation record as seen from a workflow: begin, run phases, append events, finish."""

    def __init__(self, operation_id: str, policy: ExecutionPolicy) -> None:
        self.operation_id = operation_id
        self.policy = policy

    def _record_options(self, *, bounded: bool = True) -> dict[str, Any]:
        # Record writes retry while the database is away: losing one would desynchronize the
        # record clients read from the workflow's real progress. A write the database refuses
        # for good raises a non-retryable RECORD_WRITE_FAILED (activities/operation_record.py).
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=self.policy.record_timeout_seconds),
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                maximum_interval=timedelta(seconds=10),
                non_retryable_error_types=["UNKNOWN_OPERATION", ErrorCode.RECORD_WRITE_FAILED],
            ),
        }
        if bounded:
            options["schedule_to_close_timeout"] = timedelta(seconds=self.policy.record_deadline_seconds)
        return options

    async def begin(self, awaiting_approval: bool = False) -> BeginResult:
        result: BeginResult = await workflow.execute_activity(
            BEGIN_OPERATION,
            BeginInput(self.operation_id, awaiting_approval),
            result_type=BeginResult,
            **self._record_options(),
        )
        return result

    async def record_decision(self, decision: str, decided_by: str, comment: str | None) -> None:
        record = DecisionRecord(self.operation_id, decision, decided_by, comment)
        # An activity, not a local one: the workflow task that answers the approve Update must
        # not wait for this write (a pending local activity would hold it open).
        await workflow.execute_activity(RECORD_DECISION, record, **self._record_options())

    async def update_cluster(self, change: ClusterChange) -> None:
        await workflow.execute_activity(UPDATE_CLUSTER, change, **self._record_options())

    async def request_cancel(self, operation_id: str) -> None:
        """Mark another operation CANCELLING in its record (the caller cancels its workflow)."""
        await workflow.execute_activity(
            REQUEST_CANCEL, CancelRequest(operation_id, self.operation_id), **self._record_options()
        )

    async def wait_for_operations(self, operation_ids: list[str]) -> None:
        """Wait until the operations end; the activity heartbeats while it polls their records."""
        await workflow.execute_activity(
            WAIT_FOR_OPERATIONS,
            WaitForOperations(operation_ids),
            start_to_close_timeout=timedelta(seconds=self.policy.phase_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=self.policy.heartbeat_timeout_seconds),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )

    async def event(self, event: EventInput) -> None:
        await workflow.execute_activity(APPEND_EVENT, event, **self._record_options())

    async def finish(self, finish: FinishInput) -> None:
        await workflow.execute_activity(FINISH_OPERATION, finish, **self._record_options())

    async def finish_record_write_failed(self, err: ActivityError) -> None:
        """End the operation FAILED with RECORD_WRITE_FAILED after a record write failed for
        good, marking its cluster FAILED too; if the cluster's row is what refuses, the
        operation's alone. Each write retries until the database takes it or refuses it."""
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else f"no answer within the deadline ({cause})"
        message = f"the operation's record could not be written ({err.activity_type}): {reason}"
        finish = FinishInput(
            operation_id=self.operation_id,
            status=OperationStatus.FAILED,
            message=message,
            error=OperationError(code=ErrorCode.RECORD_WRITE_FAILED, message=message, retryable=False),
            cluster_state=ClusterState.FAILED,
        )
        try:
            await workflow.execute_activity(FINISH_OPERATION, finish, **self._record_options(bounded=False))
        except ActivityError as again:
            if not record_write_failed(again):
                raise
            alone = replace(finish, cluster_state=None)
            await workflow.execute_activity(FINISH_OPERATION, alone, **self._record_options(bounded=False))

    async def run_phase(self, action: PhaseAction, phase_input: PhaseInput) -> PhaseResult:
        """Run one phase on the input's provider (`<provider>.<action>_phase`, registered by the
        worker under the same `phase_activity_name`)."""
        # A cancel that lands while an activity finishes anyway is only a request: the activity's
        # result still arrives. Check between phases so such a cancel is not lost. Cleanup and
        # rollback passes (a stage) run after the cancel on purpose and are exempt.
        if not phase_input.stage:
            raise_if_cancel_requested()
        name = phase_activity_name(phase_input.provider, action)
        if workflow.patched(PHASE_RUNS_COUNTED):
            result = await self._run_counted(name, phase_input)
        else:
            result = await workflow.execute_activity(
                name,
                phase_input,
                result_type=PhaseResult,
                start_to_close_timeout=timedelta(seconds=self.policy.phase_timeout_seconds),
                heartbeat_timeout=timedelta(seconds=self.policy.heartbeat_timeout_seconds),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=self.policy.retry_initial_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=self.policy.retry_max_interval_seconds),
                    maximum_attempts=self.policy.max_attempts,
                ),
            )
        if not phase_input.stage:
            raise_if_cancel_requested()
        return result

    async def _run_counted(self, name: str, phase_input: PhaseInput) -> PhaseResult:
        """Run the phase once per activity (Temporal retries nothing) and decide here whether a
        failed run is retried and whether it spent a cloud attempt."""
        policy = self.policy
        deadline = workflow.now() + timedelta(seconds=policy.phase_deadline_seconds)
        cloud_failures = lost_runs = 0
        recheck, recheck_reason = False, ""
        while True:
            run_input = replace(
                phase_input,
                attempt=cloud_failures + 1,
                max_attempts=policy.max_attempts,
                run=cloud_failures + lost_runs + 1,
                recheck=recheck,
                recheck_reason=recheck_reason,
            )
            try:
                result: PhaseResult = await workflow.execute_activity(
                    name,
                    run_input,
                    result_type=PhaseResult,
                    start_to_close_timeout=timedelta(seconds=policy.phase_timeout_seconds),
                    schedule_to_close_timeout=max(deadline - workflow.now(), timedelta(seconds=1)),
                    heartbeat_timeout=timedelta(seconds=policy.heartbeat_timeout_seconds),
                    # On cancel, wait until the activity has stopped: cleanup must not race a
                    # phase that is still creating resources.
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
                return result
            except ActivityError as err:
                if is_cancelled_exception(err) or workflow.now() >= deadline:
                    raise
                if lost_to_infrastructure(err):
                    lost_runs += 1
                    if lost_runs > policy.max_infrastructure_retries:
                        raise
                    recheck, recheck_reason = True, ""
                    continue  # the lost run's worker is gone; the next free one takes it now
                if database_was_away(err):
                    lost_runs += 1
                    if lost_runs > policy.max_infrastructure_retries:
                        raise
                    recheck, recheck_reason = True, "the database was unavailable"
                    delay = policy.retry_initial_seconds * 2.0 ** min(lost_runs - 1, 16)
                    await workflow.sleep(min(delay, policy.retry_max_interval_seconds))
                    continue
                cause = err.cause
                if not isinstance(cause, ApplicationError) or cause.non_retryable:
                    raise
                cloud_failures += 1
                if cloud_failures >= policy.max_attempts:
                    raise
                recheck, recheck_reason = False, ""
                delay = policy.retry_initial_seconds * 2.0 ** (cloud_failures - 1)
                await workflow.sleep(min(delay, policy.retry_max_interval_seconds))


class PhaseInputFactory:
    """Builds the PhaseInput of each phase of one operation on one cluster."""

    def __init__(
        self,
        operation_id: str,
        cluster_id: str,
        spec: dict[str, Any],
        definition: ClusterDefinition | None,
    ) -> None:
        self.operation_id = operation_id
        self.cluster_id = cluster_id
        self.spec = spec
        # Inputs recorded before the typed definition existed carry only the spec.
        self.definition = definition or ClusterDefinition.from_spec(spec)

    def __call__(
        self, phase: str, low: int, high: int, change: UpdateChange | None = None, *, stage: str = ""
    ) -> PhaseInput:
        return PhaseInput(
            operation_id=self.operation_id,
            cluster_id=self.cluster_id,
            cluster_name=self.definition.name,
            provider=self.definition.provider,
            region=self.definition.region,
            phase=phase,
            spec=self.spec,
            progress_from=low,
            progress_to=high,
            change=change or UpdateChange(),
            stage=stage,
            definition=self.definition,
        )


def raise_if_cancel_requested() -> None:
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError("cancel requested")


def phase_progress(index: int, total: int) -> tuple[int, int]:
    """Progress range of phase `index` of `total`: phases share 0..100 evenly."""
    return (index * 100) // total, ((index + 1) * 100) // total
