"""What every operation workflow shares: the approval gate, phase runs, and cleanup on cancel.

Approval is a Workflow Update, `decide`, whose validator refuses a wrong token, an expired
window or a role below the one required before anything is written: refused attempts never
enter the workflow history. A durable timer rejects the operation when the window passes.

The Update answers as soon as the workflow has taken the decision; the workflow then records it
(an activity, before any phase runs). The API writes the same record before it answers its
client, so the client reads its decision at once; the two writes are one (the record changes
only while AWAITING_APPROVAL, and the event has one key), and the workflow's makes the record
true even if the API process dies before its own.
"""

from __future__ import annotations

import asyncio
import hmac
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.operations import (
        ROLE_ORDER,
        ApprovalRequirement,
        DecideInput,
        DecisionResult,
        ErrorCode,
        ExecutionPolicy,
        FinishInput,
        OperationStatus,
    )
    from clusterflow.contracts.phase_activity import PhaseAction, PhaseResult
    from clusterflow.contracts.phases import DELETE_PHASES
    from clusterflow.workflows.steps import (
        OperationSteps,
        PhaseInputFactory,
        error_from_activity,
        phase_progress,
        record_write_failed,
    )


class OperationWorkflow:
    """Base of the operation workflows. Subclasses set `self.steps` and `self.approval` first."""

    def __init__(self) -> None:
        self.steps: OperationSteps | None = None
        self.approval: ApprovalRequirement | None = None
        self._awaiting_decision = False
        self._decision: DecideInput | None = None
        self._phase: str | None = None
        self.removed: list[str] = []  # what teardown removed so far, kept if it is interrupted

    @workflow.query
    def current_phase(self) -> str | None:
        """Live phase for operators with the Temporal UI; clients read the record instead."""
        return self._phase

    # --- approval ---------------------------------------------------------------------------

    @workflow.update
    def decide(self, decision: DecideInput) -> DecisionResult:
        # Nothing is awaited here: the workflow task that accepts the Update completes it, so the
        # caller waits for Temporal alone. `begin` records the decision right after.
        self._decision = decision
        approved = decision.action == "APPROVE"
        return DecisionResult(OperationStatus.RUNNING if approved else OperationStatus.REJECTED)

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        approval = self.approval
        if approval is None or not self._awaiting_decision or self._decision is not None:
            raise ApplicationError("the operation is not awaiting approval", type="NOT_AWAITING_APPROVAL")
        if workflow.now() >= datetime.fromisoformat(approval.expires_at):
            raise ApplicationError("the approval window has expired", type="APPROVAL_EXPIRED")
        if decision.action not in ("APPROVE", "REJECT"):
            raise ApplicationError("action must be APPROVE or REJECT", type="INVALID_ACTION")
        if ROLE_ORDER.index(decision.actor_role) < ROLE_ORDER.index(approval.required_role):
            raise ApplicationError(f"deciding needs the {approval.required_role} role", type="APPROVAL_ROLE_TOO_LOW")
        if not hmac.compare_digest(decision.token_sha256, approval.token_sha256):
            raise ApplicationError("the approval token is not valid for this operation", type="INVALID_APPROVAL_TOKEN")
        if decision.plan_hash is not None and decision.plan_hash != approval.plan_hash:
            raise ApplicationError(
                "the plan changed since it was reviewed; review the new plan", type="APPROVAL_PLAN_CHANGED"
            )

    async def begin(self, steps: OperationSteps, approval: ApprovalRequirement | None) -> str | None:
        """Start the record; wait for approval if needed. Returns None to proceed, otherwise the
        status the operation ended with (REJECTED, or whatever it already was)."""
        self.steps, self.approval = steps, approval
        begun = await steps.begin(awaiting_approval=approval is not None)
        if not begun.proceed and begun.status != OperationStatus.AWAITING_APPROVAL:
            return begun.status
        if approval is None:
            return None
        self._awaiting_decision = True
        window = datetime.fromisoformat(approval.expires_at) - workflow.now()
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=max(window, timedelta(seconds=0)))
        except TimeoutError:
            self._awaiting_decision = False
            await steps.record_decision("EXPIRED", "approval timer", None)
            return OperationStatus.REJECTED
        self._awaiting_decision = False
        decision = self._decision
        assert decision is not None
        await steps.record_decision(decision.action, decision.actor, decision.comment)
        return None if decision.action == "APPROVE" else OperationStatus.REJECTED

    # --- phases -----------------------------------------------------------------------------

    async def run_phases(
        self,
        action: PhaseAction,
        phases: list[str],
        make_input: PhaseInputFactory,
        *,
        stage: str = "",
    ) -> dict[str, PhaseResult]:
        """Run `phases` in order through `<provider>.<action>_phase`; returns results by phase.

        `make_input(phase, low, high, stage=...)` builds each PhaseInput.
        """
        assert self.steps is not None
        results: dict[str, PhaseResult] = {}
        for index, phase in enumerate(phases):
            self._phase = phase
            low, high = phase_progress(index, len(phases))
            phase_input = make_input(phase, low, high, stage=stage)
            results[phase] = await self.steps.run_phase(action, phase_input)
        return results

    async def tear_down(self, make_input: PhaseInputFactory, *, stage: str = "") -> tuple[list[str], list[str]]:
        """Run every teardown phase, carrying on past failures; returns (removed, left behind).

        Left behind names each phase whose teardown failed, with the reason.
        """
        assert self.steps is not None
        left_behind: list[str] = []
        for index, phase in enumerate(DELETE_PHASES):
            self._phase = phase
            low, high = phase_progress(index, len(DELETE_PHASES))
            phase_input = make_input(phase, low, high, stage=stage)
            try:
                self.removed += (await self.steps.run_phase(PhaseAction.DELETE, phase_input)).resources
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                left_behind.append(f"{phase}: {error_from_activity(err, phase).message}")
        return list(self.removed), left_behind

    async def guarded(self, body: Any, on_cancel: Any) -> Any:
        """Run `body()`; if the workflow is cancelled wherever it is (waiting for approval, in a
        phase, writing the record), run `on_cancel()` shielded from further cancellation, then
        end the workflow as cancelled. `on_cancel` must be idempotent: it may find nothing done.
        """
        try:
            try:
                return await body()
            except BaseException as err:
                if not is_cancelled_exception(err):
                    raise
                await asyncio.shield(on_cancel())
                raise asyncio.CancelledError() from err
        except ActivityError as err:
            # A record write failed for good: the operation ends FAILED, RECORD_WRITE_FAILED,
            # instead of the workflow failing with its record left RUNNING.
            if self.steps is None or not record_write_failed(err):
                raise
            await asyncio.shield(self.steps.finish_record_write_failed(err))
            raise ApplicationError(str(err.cause), type=ErrorCode.RECORD_WRITE_FAILED, non_retryable=True) from err

    async def finish(self, finish: FinishInput) -> None:
        assert self.steps is not None
        await self.steps.finish(finish)
        # Let an approval handler that is still recording finish before the workflow ends.
        await workflow.wait_condition(workflow.all_handlers_finished)


def policy_of(value: ExecutionPolicy | None) -> ExecutionPolicy:
    return value or ExecutionPolicy()
