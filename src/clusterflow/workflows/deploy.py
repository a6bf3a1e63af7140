"""CLUSTER_DEPLOY: provision a cluster phase by phase on its provider.

The phases are fixed and shared by every provider (VALIDATE, NETWORK, CONTROL_PLANE,
NODE_GROUPS, ADDONS, VERIFY); each provider implements them as one activity that is idempotent
(describe before create, request tokens derived from operation ID and phase), so Temporal's
retries and a worker crash never create a resource twice.

A cancelled deploy cleans up: it runs the provider's teardown phases over whatever exists, in
a shielded scope so a second cancel cannot interrupt the cleanup, and ends CANCELLED listing
what it removed and anything it had to leave behind. A failed deploy leaves its resources for
diagnosis; deleting the cluster removes them.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.operations import (
        ClusterState,
        DeleteInput,
        DeployInput,
        FinishInput,
        OperationOutcome,
        OperationStatus,
        UpdateInput,
    )
    from clusterflow.contracts.phase_activity import ClusterFacts, PhaseAction
    from clusterflow.contracts.phases import DEPLOY_PHASES
    from clusterflow.workflows.base import OperationWorkflow
    from clusterflow.workflows.steps import OperationSteps, PhaseInputFactory, error_from_activity


def phase_input_factory(inp: DeployInput | UpdateInput | DeleteInput) -> PhaseInputFactory:
    """Builds the PhaseInput of one phase from an operation input on a cluster."""
    return PhaseInputFactory(inp.operation_id, inp.cluster_id, inp.spec, inp.definition)


@workflow.defn(name="ClusterDeploy")
class ClusterDeployWorkflow(OperationWorkflow):
    @workflow.init
    def __init__(self, inp: DeployInput) -> None:
        super().__init__()
        self.expect_decision(inp.approval)

    @workflow.run
    async def run(self, inp: DeployInput) -> OperationOutcome:
        outcome: OperationOutcome = await self.guarded(lambda: self._deploy(inp), lambda: self._clean_up(inp))
        return outcome

    async def _deploy(self, inp: DeployInput) -> OperationOutcome:
        steps = OperationSteps(inp.operation_id, inp.policy)
        ended = await self.begin(steps, inp.approval)
        if ended is not None:
            return OperationOutcome(inp.operation_id, ended)
        make = phase_input_factory(inp)
        try:
            results = await self.run_phases(PhaseAction.DEPLOY, list(DEPLOY_PHASES), make)
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            error = error_from_activity(err, self._phase or "")
            await self.finish(
                FinishInput(
                    operation_id=inp.operation_id,
                    status=OperationStatus.FAILED,
                    message=f"deploy of {inp.cluster_name} failed: {error.message}",
                    error=error,
                    cluster_state=ClusterState.FAILED,
                )
            )
            raise ApplicationError(error.message, type=error.code, non_retryable=True) from err

        facts = ClusterFacts()
        for result in results.values():
            facts = facts.merged(result.facts)
        outputs = facts.result_document()
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.SUCCEEDED,
                message=f"cluster {inp.cluster_name} is ACTIVE",
                result=outputs,
                cluster_state=ClusterState.ACTIVE,
                cluster_fields=facts.record_fields() or None,
            )
        )
        return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED, result=outputs)

    async def _clean_up(self, inp: DeployInput) -> None:
        """Tear down whatever the deploy created, then record CANCELLED with the inventory."""
        if self.steps is None:
            self.steps = OperationSteps(inp.operation_id, inp.policy)
        cleaned, left_behind = await self.tear_down(phase_input_factory(inp), stage="cleanup")
        complete = not left_behind
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.CANCELLED,
                message=f"deploy cancelled; removed {len(cleaned)} resources"
                + ("" if complete else f"; could not remove: {'; '.join(left_behind)}"),
                cluster_state=ClusterState.DELETED if complete else ClusterState.FAILED,
                metadata={"cleanedUp": cleaned, "leftBehind": left_behind},
            )
        )
