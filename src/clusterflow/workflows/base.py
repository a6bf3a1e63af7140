"""What every operation workflow shares: the approval gate, phase runs, and cleanup on cancel.

Approval is a Workflow Update, `decide`, whose validator refuses a wrong token, an expired
window, a role below the one required, the requester under four eyes, an owner deciding twice,
a notification link used before and a changed plan before anything is written: refused
attempts never enter the workflow history. What it checks against (`ApprovalRequirement`) was
fixed at enqueue, so a later policy change never alters an operation already waiting. A durable
timer rejects the operation when the window passes.

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
        self._decisions: list[DecideInput] = []  # accepted decisions, in order
        self._used_links: set[str] = set()
        self._recorded = 0  # decisions `begin` has recorded
        self._phase: str | None = None
        self.removed: list[str] = []  # what teardown removed so far, kept if it is interrupted

    def expect_decision(self, approval: ApprovalRequirement | None) -> None:
        """Called from each subclass's `@workflow.init` constructor: an Update delivered with the
        workflow's first task is validated before `run` starts, so an owner who approves the
        moment the operation is accepted must find the requirement already in place."""
        self.approval = approval
        self._awaiting_decision = approval is not None

    @workflow.query
    def current_phase(self) -> str | None:
        """Live phase for operators with the Temporal UI; clients read the record instead."""
        return self._phase

    # --- approval ---------------------------------------------------------------------------

    @workflow.update
    def decide(self, decision: DecideInput) -> DecisionResult:
        # Nothing is awaited here: the workflow task that accepts the Update completes it, so the
        # caller waits for Temporal alone. `begin` records each decision right after.
        assert self.approval is not None
        self._decisions.append(decision)
        if decision.link_sha256 is not None:
            self._used_links.add(decision.link_sha256)
        if decision.action != "APPROVE":
            return DecisionResult(OperationStatus.REJECTED)
        remaining = self._remaining()
        return DecisionResult(OperationStatus.AWAITING_APPROVAL if remaining else OperationStatus.RUNNING, remaining)

    def _remaining(self) -> int:
        assert self.approval is not None
        approvals = sum(1 for d in self._decisions if d.action == "APPROVE")
        return max(self.approval.approvals_required - approvals, 0)

    def _decided(self) -> bool:
        """True once a rejection or the last approval needed has arrived."""
        return any(d.action != "APPROVE" for d in self._decisions) or self._remaining() == 0

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        approval = self.approval
        if approval is None or not self._awaiting_decision or self._decided():
            raise ApplicationError("the operation is not awaiting approval", type="NOT_AWAITING_APPROVAL")
        if workflow.now() >= datetime.fromisoformat(approval.expires_at):
            raise ApplicationError("the approval window has expired", type="APPROVAL_EXPIRED")
        if decision.action not in ("APPROVE", "REJECT"):
            raise ApplicationError("action must be APPROVE or REJECT", type="INVALID_ACTION")
        if ROLE_ORDER.index(decision.actor_role) < ROLE_ORDER.index(approval.required_role):
            raise ApplicationError(f"deciding needs the {approval.required_role} role", type="APPROVAL_ROLE_TOO_LOW")
        if approval.require_different_approver and decision.actor == approval.requested_by:
            raise ApplicationError(
                "the organization requires a different approver: the requester cannot decide their own operation",
                type="APPROVER_IS_REQUESTER",
            )
        if any(d.actor == decision.actor for d in self._decisions):
            raise ApplicationError(
                f"{decision.actor} has already decided on this operation; another owner must",
                type="ALREADY_DECIDED",
            )
        if decision.token_sha256 is not None and not hmac.compare_digest(decision.token_sha256, approval.token_sha256):
            raise ApplicationError("the approval token is not valid for this operation", type="INVALID_APPROVAL_TOKEN")
        if decision.link_sha256 is not None and decision.link_sha256 in self._used_links:
            raise ApplicationError("this approval link has already been used", type="APPROVAL_LINK_USED")
        if decision.plan_hash is not None and decision.plan_hash != approval.plan_hash:
            raise ApplicationError(
                "the plan changed since it was reviewed; review the new plan", type="APPROVAL_PLAN_CHANGED"
            )

    async def begin(self, steps: OperationSteps, approval: ApprovalRequirement | None) -> str | None:
        """Start the record; wait for approval if needed. Returns None to proceed, otherwise the
        status the operation ended with (REJECTED, or whatever it already was).

        Each decision is recorded as it arrives (who, when, comment), in the order the Updates
        were accepted; the operation proceeds once `approvals_required` distinct owners approved
        and ends REJECTED at the first rejection or when the window passes."""
        self.steps, self.approval = steps, approval
        self._awaiting_decision = approval is not None  # decisions are taken from the first task
        begun = await steps.begin(awaiting_approval=approval is not None)
        if not begun.proceed and begun.status != OperationStatus.AWAITING_APPROVAL:
            self._awaiting_decision = False
            return begun.status
        if approval is None:
            return None
        expires_at = datetime.fromisoformat(approval.expires_at)
        while True:
            window = max(expires_at - workflow.now(), timedelta(seconds=0))
            try:
                await workflow.wait_condition(lambda: len(self._decisions) > self._recorded, timeout=window)
            except TimeoutError:
                self._awaiting_decision = False
                await steps.record_decision("EXPIRED", "approval timer", None)
                return OperationStatus.REJECTED
            # Decisions accepted while one is being recorded are recorded in the same pass; once
            # decided, the validator accepts nothing more.
            while self._recorded < len(self._decisions):
                decision = self._decisions[self._recorded]
                self._recorded += 1
                await steps.record_decision(decision.action, decision.actor, decision.comment)
            if self._decided():
                self._awaiting_decision = False
                rejected = any(d.action != "APPROVE" for d in self._decisions)
                return OperationStatus.REJECTED if rejected else None

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
            try:
                await asyncio.shield(self.steps.finish_record_write_failed(err))
            except ActivityError as again:
                # The record refuses even that: the workflow fails saying why, and the worker's
                # reconciler ends the record once the database takes the write.
                if not record_write_failed(again):
                    raise
            raise ApplicationError(str(err.cause), type=ErrorCode.RECORD_WRITE_FAILED, non_retryable=True) from err

    async def finish(self, finish: FinishInput) -> None:
        assert self.steps is not None
        await self.steps.finish(finish)
        # Let an approval handler that is still recording finish before the workflow ends.
        await workflow.wait_condition(workflow.all_handlers_finished)


def policy_of(value: ExecutionPolicy | None) -> ExecutionPolicy:
    return value or ExecutionPolicy()
