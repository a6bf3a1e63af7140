"""Every call from the API to Temporal, bounded by one setting and classified in one place.

The API's client carries `BoundedCalls`, a client interceptor, so no route or command can
forget the bound. The SDK retries an unreachable or overloaded server for tens of seconds, and a server that
accepts connections but never answers holds a call forever; a client waiting on our answer
would see neither. So each call (start, cancel, terminate, Update, describe, signal, query)
runs under `temporal_call_timeout_seconds`: the RPC deadline ends the SDK's retries, and a task
deadline also covers connecting; we do not wait for a hung call to acknowledge its
cancellation. A call that runs out, or that Temporal answers with "not now" (unavailable,
deadline exceeded, overloaded), raises `DependencyUnavailable`, which every route answers as
503 `ORCHESTRATOR_UNAVAILABLE` with `Retry-After` (`api/dependency_faults.py`); any other
answer (not found, already started, a refused Update) reaches the caller unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import client as temporal

from clusterflow.api.dependency_faults import Dependency, DependencyUnavailable, temporal_unavailable

T = TypeVar("T")


async def bounded(limit: float, what: str, call: Awaitable[T]) -> T:
    """Await `call` for at most `limit` seconds."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        # Retrieve the eventual exception so it is not reported as never retrieved.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        task.cancel()
        raise DependencyUnavailable(Dependency.TEMPORAL, f"{what} did not answer within {limit:g}s")
    try:
        return task.result()
    except Exception as err:
        if temporal_unavailable(err):
            raise DependencyUnavailable(Dependency.TEMPORAL, f"{what}: {err}") from err
        raise


class BoundedCalls(temporal.Interceptor):
    """Installs the bound on every call a route makes through the API's Temporal client."""

    def __init__(self, limit_seconds: float) -> None:
        self.limit = limit_seconds

    def intercept_client(self, next: temporal.OutboundInterceptor) -> temporal.OutboundInterceptor:
        return _Bounded(next, self.limit)


class _Bounded(temporal.OutboundInterceptor):
    def __init__(self, next: temporal.OutboundInterceptor, limit: float) -> None:
        super().__init__(next)
        self.limit = limit
        self.rpc_timeout = timedelta(seconds=limit)

    def _timed(self, input: Any) -> Any:
        if input.rpc_timeout is None:
            input.rpc_timeout = self.rpc_timeout
        return input

    async def start_workflow(self, input: temporal.StartWorkflowInput) -> temporal.WorkflowHandle[Any, Any]:
        return await bounded(self.limit, "workflow start", super().start_workflow(self._timed(input)))

    async def cancel_workflow(self, input: temporal.CancelWorkflowInput) -> None:
        await bounded(self.limit, "workflow cancel", super().cancel_workflow(self._timed(input)))

    async def terminate_workflow(self, input: temporal.TerminateWorkflowInput) -> None:
        await bounded(self.limit, "workflow terminate", super().terminate_workflow(self._timed(input)))

    async def start_workflow_update(
        self, input: temporal.StartWorkflowUpdateInput
    ) -> temporal.WorkflowUpdateHandle[Any]:
        return await bounded(self.limit, "workflow update", super().start_workflow_update(self._timed(input)))

    async def describe_workflow(self, input: temporal.DescribeWorkflowInput) -> temporal.WorkflowExecutionDescription:
        return await bounded(self.limit, "workflow describe", super().describe_workflow(self._timed(input)))

    async def signal_workflow(self, input: temporal.SignalWorkflowInput) -> None:
        await bounded(self.limit, "workflow signal", super().signal_workflow(self._timed(input)))

    async def query_workflow(self, input: temporal.QueryWorkflowInput) -> Any:
        return await bounded(self.limit, "workflow query", super().query_workflow(self._timed(input)))
