"""CLUSTER_DEPLOY: provision a cluster phase by phase on its provider.

The phases are fixed and shared by every provider (VALIDATE, NETWORK, CONTROL_PLANE,
NODE_GROUPS, ADDONS, VERIFY); each provider implements them as one activity that is idempotent
(describe before create, request tokens derived from operation ID and phase), so Temporal's
retries and a worker crash never create a resource twice.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from clusterflow.workflows.contracts import (
        DEPLOY_PHASES,
        ClusterState,
        DeployInput,
        FinishInput,
        OperationError,
        OperationOutcome,
        OperationStatus,
        PhaseInput,
    )
    from clusterflow.workflows.steps import (
        OperationSteps,
        error_from_activity,
        phase_progress,
    )


@workflow.defn(name="ClusterDeploy")
class ClusterDeployWorkflow:
    def __init__(self) -> None:
        self._phase: str | None = None

    @workflow.query
    def current_phase(self) -> str | None:
        """Live phase for operators with the Temporal UI; clients read the record instead."""
        return self._phase

    @workflow.run
    async def run(self, inp: DeployInput) -> OperationOutcome:
        steps = OperationSteps(inp.operation_id, inp.policy)
        begun = await steps.begin()
        if not begun.proceed:
            return OperationOutcome(inp.operation_id, begun.status)

        outputs: dict[str, Any] = {}
        for index, phase in enumerate(DEPLOY_PHASES):
            self._phase = phase
            low, high = phase_progress(index, len(DEPLOY_PHASES))
            try:
                result = await steps.run_phase(
                    "deploy",
                    PhaseInput(
                        operation_id=inp.operation_id,
                        cluster_id=inp.cluster_id,
                        cluster_name=inp.cluster_name,
                        provider=inp.provider,
                        region=inp.region,
                        phase=phase,
                        spec=inp.spec,
                        progress_from=low,
                        progress_to=high,
                    ),
                )
            except ActivityError as err:
                error = error_from_activity(err, phase)
                await self._fail(steps, inp, error)
                raise ApplicationError(error.message, type=error.code, non_retryable=True) from err
            outputs.update(result.outputs)

        await steps.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.SUCCEEDED,
                message=f"cluster {inp.cluster_name} is ACTIVE",
                result=outputs,
                cluster_state=ClusterState.ACTIVE,
                cluster_fields=outputs.get("cluster"),
            )
        )
        return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED, result=outputs)

    async def _fail(self, steps: OperationSteps, inp: DeployInput, error: OperationError) -> None:
        await steps.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.FAILED,
                message=f"deploy of {inp.cluster_name} failed: {error.message}",
                error=error,
                cluster_state=ClusterState.FAILED,
            )
        )
