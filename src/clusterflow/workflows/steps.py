"""Workflow-side helpers every operation workflow uses to drive its record and its phases.

Activities are referenced by name, not imported, so this module and the workflows stay free of
the I/O libraries the activity implementations import.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError
from temporalio.workflow import ActivityCancellationType

from clusterflow.contracts.changes import UpdateChange
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.contracts.operations import (
    BeginInput,
    BeginResult,
    CancelRequest,
    ClusterChange,
    DecisionRecord,
    ErrorCode,
    EventInput,
    ExecutionPolicy,
    FinishInput,
    OperationError,
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

    def _record_options(self) -> dict[str, Any]:
        # Record writes retry until the database is back: losing one would desynchronize the
        # record clients read from the workflow's real progress.
        return {
            "start_to_close_timeout": timedelta(seconds=self.policy.record_timeout_seconds),
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                maximum_interval=timedelta(seconds=10),
                non_retryable_error_types=["UNKNOWN_OPERATION"],
            ),
        }

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

    async def run_phase(self, action: PhaseAction, phase_input: PhaseInput) -> PhaseResult:
        """Run one phase on the input's provider (`<provider>.<action>_phase`, registered by the
        worker under the same `phase_activity_name`)."""
        # A cancel that lands while an activity finishes anyway is only a request: the activity's
        # result still arrives. Check between phases so such a cancel is not lost. Cleanup and
        # rollback passes (a stage) run after the cancel on purpose and are exempt.
        if not phase_input.stage:
            raise_if_cancel_requested()
        result: PhaseResult = await workflow.execute_activity(
            phase_activity_name(phase_input.provider, action),
            phase_input,
            result_type=PhaseResult,
            start_to_close_timeout=timedelta(seconds=self.policy.phase_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=self.policy.heartbeat_timeout_seconds),
            # On cancel, wait until the activity has stopped: cleanup must not race a phase
            # that is still creating resources.
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
