"""CLUSTER_UPDATE: apply a planned change (version, node groups, tags) phase by phase.

The API plans the update (see `clusterflow.planning`) and hands the workflow the phases, the
change and its inverse. If a phase fails or the operation is cancelled, the phases that ran
(including the one that failed part-way) are rolled back in reverse with the inverse change,
and the cluster's `rollbackStatus` says how that went.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from clusterflow.workflows.base import OperationWorkflow
    from clusterflow.workflows.contracts import (
        ClusterChange,
        ClusterState,
        FinishInput,
        OperationError,
        OperationOutcome,
        OperationStatus,
        Phase,
        UpdateInput,
    )
    from clusterflow.workflows.deploy import phase_input_factory
    from clusterflow.workflows.steps import OperationSteps, error_from_activity

# Phases with nothing to undo.
_READ_ONLY = {Phase.VALIDATE, Phase.VERIFY}


@workflow.defn(name="ClusterUpdate")
class ClusterUpdateWorkflow(OperationWorkflow):
    def __init__(self) -> None:
        super().__init__()
        self._touched: list[str] = []  # phases that started changing the cluster
        self._started: str | None = None

    @workflow.run
    async def run(self, inp: UpdateInput) -> OperationOutcome:
        outcome: OperationOutcome = await self.guarded(lambda: self._update(inp), lambda: self._cancelled(inp))
        return outcome

    def _status(self, status: str, reason: str | None = None, started: str | None = None) -> dict[str, Any]:
        now = workflow.now().isoformat()
        detail: dict[str, Any] = {"status": status, "startedAt": started or now, "reason": reason}
        if status != "IN_PROGRESS":
            detail["completedAt"] = now
        return detail

    async def _update(self, inp: UpdateInput) -> OperationOutcome:
        steps = OperationSteps(inp.operation_id, inp.policy)
        ended = await self.begin(steps, inp.approval)
        if ended is not None:
            return OperationOutcome(inp.operation_id, ended)
        self._started = workflow.now().isoformat()
        await steps.update_cluster(
            ClusterChange(inp.cluster_id, ClusterState.UPDATING, {"upgradeStatus": self._status("IN_PROGRESS")})
        )
        make = phase_input_factory(inp)
        try:
            for index, phase in enumerate(inp.phases):
                self._phase = phase
                low, high = (index * 100) // len(inp.phases), ((index + 1) * 100) // len(inp.phases)
                if phase not in _READ_ONLY:
                    self._touched.append(phase)
                await steps.run_phase("update", make(phase, low, high, inp.change))
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            error = error_from_activity(err, self._phase or "")
            rolled_back = await self._roll_back(inp, f"update failed at {self._phase}: {error.message}")
            failure = OperationError(error.code, error.message, error.retryable)
            await self.finish(
                FinishInput(
                    operation_id=inp.operation_id,
                    status=OperationStatus.FAILED,
                    message=f"update failed at {self._phase}; "
                    + ("rolled back" if rolled_back else "rollback failed: the cluster needs attention"),
                    error=failure,
                    cluster_state=ClusterState.ACTIVE if rolled_back else ClusterState.FAILED,
                    cluster_fields={"upgradeStatus": self._status("FAILED", error.message, self._started)},
                )
            )
            raise ApplicationError(error.message, type=error.code, non_retryable=True) from err

        fields = dict(inp.result_fields)
        fields["upgradeStatus"] = self._status("COMPLETED", None, self._started)
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.SUCCEEDED,
                message=f"cluster {inp.cluster_name} updated",
                cluster_state=ClusterState.ACTIVE,
                cluster_fields=fields,
            )
        )
        return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED)

    async def _roll_back(self, inp: UpdateInput, reason: str) -> bool:
        """Undo the touched phases in reverse; true if every one was undone."""
        assert self.steps is not None
        started = workflow.now().isoformat()
        await self.steps.update_cluster(
            ClusterChange(inp.cluster_id, None, {"rollbackStatus": self._status("IN_PROGRESS", reason, started)})
        )
        make = phase_input_factory(inp)
        ok = True
        for phase in reversed(self._touched):
            phase_input = make(phase, 0, 0, inp.rollback)
            phase_input.stage = "rollback"
            try:
                await self.steps.run_phase("update", phase_input)
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                ok = False
                reason += f"; rollback of {phase} failed: {error_from_activity(err, phase).message}"
                break
        status = self._status("COMPLETED" if ok else "FAILED", reason, started)
        if not ok:
            status["suggestedAction"] = "inspect the cluster, then update it to the wanted state"
        await self.steps.update_cluster(ClusterChange(inp.cluster_id, None, {"rollbackStatus": status}))
        return ok

    async def _cancelled(self, inp: UpdateInput) -> None:
        if self.steps is None:
            self.steps = OperationSteps(inp.operation_id, inp.policy)
        rolled_back = await self._roll_back(inp, "update cancelled") if self._touched else True
        started = self._started
        left_behind = [] if rolled_back else list(self._touched)
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.CANCELLED,
                message="update cancelled"
                + ("; changes rolled back" if self._touched and rolled_back else "")
                + ("" if rolled_back else "; rollback failed: the cluster needs attention"),
                cluster_state=ClusterState.ACTIVE if rolled_back else ClusterState.FAILED,
                cluster_fields={"upgradeStatus": self._status("CANCELLED", "cancelled", started)} if started else None,
                metadata={
                    "cleanedUp": list(reversed(self._touched)),
                    "leftBehind": left_behind,
                },
            )
        )
