"""CLUSTER_REGISTER, CLUSTER_UNREGISTER, CLUSTER_RESYNC and KUBECONFIG_GENERATE.

Registration has no cloud phases: the workflow waits, on a durable timer, for the agent's
`agent_connected` signal (sent by the API when the agent spends its one-time token). If the
timer fires first it asks the database once more (a signal sent before the workflow existed
would be lost, the record is not), then fails with instructions. The other three operations
each run one activity that hands a request to the agent through the registration row and
waits, heartbeating, for the agent's answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.agent import (
        AGENT_CONNECTED_SIGNAL,
        AgentErrorCode,
        AgentReport,
        AgentState,
        AgentStateInput,
        AgentTaskInput,
        AgentTaskResult,
        RegisterInput,
    )
    from clusterflow.contracts.operations import (
        ClusterState,
        EventInput,
        FinishInput,
        OperationError,
        OperationOutcome,
        OperationStatus,
    )
    from clusterflow.workflows.steps import OperationSteps, error_from_activity

CONNECTION_STATE = "registration.connection_state"
REMOVE_AGENT = "registration.remove_agent"
ROTATE_CREDENTIAL = "registration.rotate_credential"
AWAIT_KUBECONFIG = "kubeconfig.await_ready"
WITHDRAW = "registration.withdraw"

CONNECTED = "CONNECTED"

T = TypeVar("T")


async def guarded(body: Callable[[], Awaitable[T]], on_cancel: Callable[[], Awaitable[None]]) -> T:
    """Run `body()`; if the workflow is cancelled wherever it waits, record the cancellation
    (shielded from a second cancel), then end the workflow as cancelled."""
    try:
        return await body()
    except BaseException as err:
        if not is_cancelled_exception(err):
            raise
        await asyncio.shield(on_cancel())
        raise asyncio.CancelledError() from err


async def _finish_cancelled(inp: RegisterInput | AgentTaskInput, what: str, cluster_state: str | None) -> None:
    if isinstance(inp, AgentTaskInput):
        await workflow.execute_activity(WITHDRAW, inp, start_to_close_timeout=timedelta(seconds=30))
    await OperationSteps(inp.operation_id, inp.policy).finish(
        FinishInput(
            inp.operation_id,
            OperationStatus.CANCELLED,
            f"{what} of {inp.cluster_name} cancelled",
            cluster_state=cluster_state,
        )
    )


def registration_instructions(cluster_name: str, namespace: str = "clusterflow-agent") -> str:
    return (
        f"the agent of {cluster_name} did not connect. Check that the manifest was applied "
        f"(kubectl -n {namespace} get deploy,pods), read the agent's log "
        f"(kubectl -n {namespace} logs deploy/clusterflow-agent), make sure the cluster can reach "
        "the control plane's URL over HTTPS, then register again for a new token"
    )


async def _agent_task(steps: OperationSteps, name: str, inp: AgentTaskInput) -> AgentTaskResult:
    result: AgentTaskResult = await workflow.execute_activity(
        name,
        inp,
        result_type=AgentTaskResult,
        start_to_close_timeout=timedelta(seconds=inp.timeout_seconds + 60),
        heartbeat_timeout=timedelta(seconds=steps.policy.heartbeat_timeout_seconds),
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=steps.policy.retry_initial_seconds),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=steps.policy.retry_max_interval_seconds),
            maximum_attempts=steps.policy.max_attempts,
        ),
    )
    return result


@workflow.defn(name="ClusterRegister")
class ClusterRegisterWorkflow:
    def __init__(self) -> None:
        self._report: AgentReport | None = None

    @workflow.signal(name=AGENT_CONNECTED_SIGNAL)
    def agent_connected(self, report: AgentReport) -> None:
        if self._report is None:
            self._report = report

    @workflow.run
    async def run(self, inp: RegisterInput) -> OperationOutcome:
        # A cancelled registration leaves the cluster FAILED: its token stops working with the
        # operation, and the cluster can be registered again or unregistered.
        return await guarded(
            lambda: self._register(inp), lambda: _finish_cancelled(inp, "registration", ClusterState.FAILED)
        )

    async def _register(self, inp: RegisterInput) -> OperationOutcome:
        steps = OperationSteps(inp.operation_id, inp.policy)
        begun = await steps.begin()
        if not begun.proceed:
            return OperationOutcome(inp.operation_id, begun.status)
        await steps.event(
            EventInput(
                inp.operation_id,
                "agent/waiting",
                f"waiting up to {int(inp.timeout_seconds)}s for the agent of {inp.cluster_name} to connect",
                kind="progress",
                phase="AGENT_CONNECT",
                progress_percentage=10,
            )
        )
        try:
            await workflow.wait_condition(
                lambda: self._report is not None, timeout=timedelta(seconds=inp.timeout_seconds)
            )
        except TimeoutError:
            state: AgentState = await workflow.execute_activity(
                CONNECTION_STATE,
                AgentStateInput(inp.cluster_id),
                result_type=AgentState,
                start_to_close_timeout=timedelta(seconds=30),
            )
            if state.connection_status == CONNECTED:
                info = state.agent_info
                self._report = AgentReport(
                    kubernetes_version=info.get("kubernetesVersion"),
                    node_count=int(info.get("nodeCount") or 0),
                    architecture=info.get("architecture"),
                )
        if self._report is None:
            error = OperationError(
                AgentErrorCode.REGISTRATION_TIMED_OUT, registration_instructions(inp.cluster_name), retryable=True
            )
            await steps.finish(
                FinishInput(
                    inp.operation_id,
                    OperationStatus.FAILED,
                    f"registration of {inp.cluster_name} failed: {error.message}",
                    error=error,
                    cluster_state=ClusterState.FAILED,
                )
            )
            return OperationOutcome(inp.operation_id, OperationStatus.FAILED, error=error)

        report = self._report
        outputs = {
            "kubernetesVersion": report.kubernetes_version,
            "nodeCount": report.node_count,
            "architecture": report.architecture,
        }
        await steps.finish(
            FinishInput(
                inp.operation_id,
                OperationStatus.SUCCEEDED,
                f"agent of {inp.cluster_name} connected: Kubernetes {report.kubernetes_version}, "
                f"{report.node_count} nodes ({report.architecture}); cluster is ACTIVE",
                result=outputs,
                cluster_state=ClusterState.ACTIVE,
                cluster_fields={"kubernetesVersion": report.kubernetes_version},
            )
        )
        return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED, result=outputs)


async def _run_agent_operation(
    inp: AgentTaskInput,
    activity_name: str,
    what: str,
    success_state: str | None,
) -> OperationOutcome:
    steps = OperationSteps(inp.operation_id, inp.policy)
    begun = await steps.begin()
    if not begun.proceed:
        return OperationOutcome(inp.operation_id, begun.status)
    try:
        result = await _agent_task(steps, activity_name, inp)
    except ActivityError as err:
        if is_cancelled_exception(err):
            raise
        error = error_from_activity(err, what)
        await steps.finish(
            FinishInput(
                inp.operation_id,
                OperationStatus.FAILED,
                f"{what} of {inp.cluster_name} failed: {error.message}",
                error=error,
            )
        )
        raise ApplicationError(error.message, type=error.code, non_retryable=True) from err
    await steps.finish(
        FinishInput(
            inp.operation_id,
            OperationStatus.SUCCEEDED,
            result.message,
            result=result.outputs,
            cluster_state=success_state,
        )
    )
    return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED, result=result.outputs)


@workflow.defn(name="ClusterUnregister")
class ClusterUnregisterWorkflow:
    @workflow.run
    async def run(self, inp: AgentTaskInput) -> OperationOutcome:
        return await guarded(
            lambda: _run_agent_operation(inp, REMOVE_AGENT, "unregistration", ClusterState.DELETED),
            lambda: _finish_cancelled(inp, "unregistration", None),
        )


@workflow.defn(name="ClusterResync")
class ClusterResyncWorkflow:
    @workflow.run
    async def run(self, inp: AgentTaskInput) -> OperationOutcome:
        return await guarded(
            lambda: _run_agent_operation(inp, ROTATE_CREDENTIAL, "resync", None),
            lambda: _finish_cancelled(inp, "resync", None),
        )


@workflow.defn(name="KubeconfigGenerate")
class KubeconfigGenerateWorkflow:
    @workflow.run
    async def run(self, inp: AgentTaskInput) -> OperationOutcome:
        return await guarded(
            lambda: _run_agent_operation(inp, AWAIT_KUBECONFIG, "kubeconfig generation", None),
            lambda: _finish_cancelled(inp, "kubeconfig generation", None),
        )
