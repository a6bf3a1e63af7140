"""CLUSTER_UPDATE: apply a planned change (version, node groups, tags) phase by phase.

The API plans the update (`clusterflow.planning`) and hands the workflow an `UpdatePlan`: the
phases, the change, its inverse and the cluster before and after. If a phase fails or the
operation is cancelled, the phases that ran (including the one that failed part-way) run again
in reverse with the inverse change, as a `rollback` stage.

What a rollback restores, and what it cannot, is written down for the user: node groups
(membership and sizes) and tags come back; the control plane and any node group already
upgraded stay on the version they reached, because EKS, GKE and AKS refuse downgrades. The
cluster record then states the version the provider reported (`PhaseResult.kubernetes_version`),
not the one the update hoped for, and the operation's `cleanedUp` / `leftBehind` and the
cluster's `rollbackStatus` list each thing restored or not.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.changes import ChangeKind, UpdatePlan
    from clusterflow.contracts.operations import (
        ClusterChange,
        ClusterState,
        FinishInput,
        OperationError,
        OperationOutcome,
        OperationStatus,
        UpdateInput,
    )
    from clusterflow.contracts.phase_activity import PhaseAction, PhaseResult
    from clusterflow.contracts.phases import Phase
    from clusterflow.workflows.base import OperationWorkflow
    from clusterflow.workflows.deploy import phase_input_factory
    from clusterflow.workflows.steps import OperationSteps, error_from_activity

# Phases with nothing to undo.
_READ_ONLY = {Phase.VALIDATE, Phase.VERIFY}


class Rollback:
    """The outcome of a rollback pass: what came back, what could not, and the version reached."""

    def __init__(self) -> None:
        self.ok = True
        self.restored: list[str] = []
        self.not_restored: list[str] = []
        self.version: str | None = None


@workflow.defn(name="ClusterUpdate")
class ClusterUpdateWorkflow(OperationWorkflow):
    @workflow.init
    def __init__(self, inp: UpdateInput) -> None:
        super().__init__()
        self.expect_decision(inp.approval)
        self._touched: list[str] = []  # phases that started changing the cluster
        self._completed: dict[str, PhaseResult] = {}
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

    def _reached_version(self, plan: UpdatePlan) -> str | None:
        """The control plane's version as the provider last reported it during the forward pass."""
        result = self._completed.get(Phase.CONTROL_PLANE)
        if result is not None:
            return result.kubernetes_version or plan.after.kubernetes_version
        return plan.before.kubernetes_version

    async def _update(self, inp: UpdateInput) -> OperationOutcome:
        plan = inp.plan
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
            for index, phase in enumerate(plan.phases):
                self._phase = phase
                low, high = (index * 100) // len(plan.phases), ((index + 1) * 100) // len(plan.phases)
                if phase not in _READ_ONLY:
                    self._touched.append(phase)
                self._completed[phase] = await steps.run_phase(PhaseAction.UPDATE, make(phase, low, high, plan.change))
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            error = error_from_activity(err, self._phase or "")
            rollback = await self._roll_back(inp, f"update failed at {self._phase}: {error.message}")
            failure = OperationError(error.code, error.message, error.retryable)
            await self.finish(
                FinishInput(
                    operation_id=inp.operation_id,
                    status=OperationStatus.FAILED,
                    message=f"update failed at {self._phase}; "
                    + ("rolled back" if rollback.ok else "rollback failed: the cluster needs attention")
                    + "".join(f"; {item}" for item in rollback.not_restored),
                    error=failure,
                    cluster_state=ClusterState.ACTIVE if rollback.ok else ClusterState.FAILED,
                    cluster_fields=self._fields_after_rollback(rollback)
                    | {"upgradeStatus": self._status("FAILED", error.message, self._started)},
                    metadata={"cleanedUp": rollback.restored, "leftBehind": rollback.not_restored},
                )
            )
            raise ApplicationError(error.message, type=error.code, non_retryable=True) from err

        fields = plan.after.with_version(self._reached_version(plan)).record_fields()
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

    @staticmethod
    def _fields_after_rollback(rollback: Rollback) -> dict[str, Any]:
        """The record keeps its groups and tags until an update succeeds, so after a rollback only
        the version can differ: the one the provider reported."""
        return {"kubernetesVersion": rollback.version} if rollback.version else {}

    def _versions_left(self, plan: UpdatePlan, rollback: Rollback) -> list[str]:
        target = plan.change.target_version
        if not target:
            return []
        left = []
        if rollback.version and rollback.version != plan.before.kubernetes_version:
            left.append(
                f"control plane stays on {rollback.version}: the cloud cannot downgrade it "
                f"(it ran {plan.before.kubernetes_version} before the update)"
            )
        if Phase.NODE_GROUPS in self._touched:
            upgraded = [c.name for c in plan.change.of_kind(ChangeKind.UPGRADE)]
            if upgraded:
                left.append(
                    f"node groups {', '.join(upgraded)} keep any of their nodes already upgraded to {target} "
                    "(nodes are not downgraded)"
                )
        return left

    async def _roll_back(self, inp: UpdateInput, reason: str) -> Rollback:
        """Undo the touched phases in reverse with the plan's inverse."""
        assert self.steps is not None
        plan = inp.plan
        outcome = Rollback()
        outcome.version = self._reached_version(plan) if Phase.CONTROL_PLANE not in self._touched else None
        started = workflow.now().isoformat()
        await self.steps.update_cluster(
            ClusterChange(inp.cluster_id, None, {"rollbackStatus": self._status("IN_PROGRESS", reason, started)})
        )
        make = phase_input_factory(inp)
        for phase in reversed(self._touched):
            try:
                result = await self.steps.run_phase(
                    PhaseAction.UPDATE, make(phase, 0, 0, plan.inverse, stage="rollback")
                )
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                outcome.ok = False
                message = error_from_activity(err, phase).message
                reason += f"; rollback of {phase} failed: {message}"
                outcome.not_restored.append(f"{phase}: rollback failed: {message}")
                break
            if phase == Phase.NODE_GROUPS:
                outcome.restored += [c.describe() for c in plan.inverse.node_groups]
            if phase == Phase.CONTROL_PLANE:
                outcome.version = result.kubernetes_version or self._reached_version(plan)
                if plan.inverse.tags is not None:
                    outcome.restored.append("tags restored")
                if plan.change.gke is not None or plan.change.aks is not None:
                    outcome.not_restored.append("provider settings applied by the update stay as applied")
        if outcome.ok and outcome.version is None:
            outcome.version = self._reached_version(plan)
        outcome.not_restored += self._versions_left(plan, outcome)
        status = self._status("COMPLETED" if outcome.ok else "FAILED", reason, started)
        status["controlPlaneVersion"] = outcome.version
        status["restored"] = outcome.restored
        status["notRestored"] = outcome.not_restored
        if not outcome.ok:
            status["suggestedAction"] = "inspect the cluster, then update it to the wanted state"
        await self.steps.update_cluster(ClusterChange(inp.cluster_id, None, {"rollbackStatus": status}))
        return outcome

    async def _cancelled(self, inp: UpdateInput) -> None:
        if self.steps is None:
            self.steps = OperationSteps(inp.operation_id, inp.policy)
        rollback = await self._roll_back(inp, "update cancelled") if self._touched else Rollback()
        started = self._started
        fields: dict[str, Any] = self._fields_after_rollback(rollback) if self._touched else {}
        if started:
            fields["upgradeStatus"] = self._status("CANCELLED", "cancelled", started)
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.CANCELLED,
                message="update cancelled"
                + ("; changes rolled back" if self._touched and rollback.ok else "")
                + ("" if rollback.ok else "; rollback failed: the cluster needs attention")
                + "".join(f"; {item}" for item in rollback.not_restored),
                cluster_state=ClusterState.ACTIVE if rollback.ok else ClusterState.FAILED,
                cluster_fields=fields or None,
                metadata={"cleanedUp": rollback.restored, "leftBehind": rollback.not_restored},
            )
        )
