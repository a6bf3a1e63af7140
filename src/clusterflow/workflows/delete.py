"""CLUSTER_DELETE: tear a cluster down in reverse order of creation, idempotently.

Teardown runs every provider phase in `DELETE_PHASES`; deleting what is already gone is
success, so a retried or repeated delete converges. A delete may pre-empt a deploy that is
stuck: it marks the deploy CANCELLING, cancels its workflow (the deploy cleans up after
itself), waits for it to end, then tears down whatever is left. The cluster row stays, in state
DELETED, so its history remains readable.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.operations import (
        ClusterChange,
        ClusterState,
        DeleteInput,
        ErrorCode,
        FinishInput,
        OperationError,
        OperationOutcome,
        OperationStatus,
    )
    from clusterflow.workflows.base import OperationWorkflow
    from clusterflow.workflows.deploy import phase_input_factory
    from clusterflow.workflows.steps import OperationSteps


@workflow.defn(name="ClusterDelete")
class ClusterDeleteWorkflow(OperationWorkflow):
    @workflow.init
    def __init__(self, inp: DeleteInput) -> None:
        super().__init__()
        self.expect_decision(inp.approval)
        self._teardown_started = False

    @workflow.run
    async def run(self, inp: DeleteInput) -> OperationOutcome:
        outcome: OperationOutcome = await self.guarded(lambda: self._delete(inp), lambda: self._cancelled(inp))
        return outcome

    async def _delete(self, inp: DeleteInput) -> OperationOutcome:
        steps = OperationSteps(inp.operation_id, inp.policy)
        ended = await self.begin(steps, inp.approval)
        if ended is not None:
            return OperationOutcome(inp.operation_id, ended)
        await self._preempt(steps, inp.preempts)
        await steps.update_cluster(ClusterChange(inp.cluster_id, ClusterState.DELETING))
        self._teardown_started = True
        removed, left_behind = await self.tear_down(phase_input_factory(inp))
        if left_behind:
            error = OperationError(
                ErrorCode.TEARDOWN_INCOMPLETE,
                f"could not remove everything: {'; '.join(left_behind)}; delete again to retry",
                retryable=True,
            )
            await self.finish(
                FinishInput(
                    operation_id=inp.operation_id,
                    status=OperationStatus.FAILED,
                    message=error.message,
                    error=error,
                    cluster_state=ClusterState.FAILED,
                    metadata={"cleanedUp": removed, "leftBehind": left_behind},
                )
            )
            return OperationOutcome(inp.operation_id, OperationStatus.FAILED, error=error)
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.SUCCEEDED,
                message=f"cluster {inp.cluster_name} deleted; removed {len(removed)} resources",
                cluster_state=ClusterState.DELETED,
                metadata={"cleanedUp": removed, "leftBehind": []},
            )
        )
        return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED)

    async def _preempt(self, steps: OperationSteps, deploys: list[str]) -> None:
        for operation_id in deploys:
            await steps.request_cancel(operation_id)
            try:
                await workflow.get_external_workflow_handle(operation_id).cancel()
            except Exception:  # it already ended (or never started): nothing to cancel
                workflow.logger.info("pre-empted operation %s had no running workflow", operation_id)
        if deploys:
            await steps.wait_for_operations(deploys)

    async def _cancelled(self, inp: DeleteInput) -> None:
        if self.steps is None:
            self.steps = OperationSteps(inp.operation_id, inp.policy)
        if not self._teardown_started:
            message, state, left = "delete cancelled before anything was removed", inp.previous_state, []
        else:
            message = "delete cancelled part-way: the cluster is partially deleted; delete again to finish"
            state, left = ClusterState.FAILED, [f"teardown stopped at {self._phase}"]
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.CANCELLED,
                message=message,
                cluster_state=state,
                metadata={"cleanedUp": self.removed, "leftBehind": left},
            )
        )
