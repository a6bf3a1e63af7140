"""HistoryRetention: retire old history, one activity per kind, oldest kinds of damage first.

Started by a Temporal schedule the workers keep in place (`worker/schedules.py`), so it runs
once per `CLUSTERFLOW_RETENTION_INTERVAL_SECONDS` however many workers there are, never two at
once (the schedule skips a run while one is going), and an operator can trigger or pause it in
Temporal's UI. Event logs go before operations so an operation kept for its summary loses its
log first; each kind is independent, so one failing (retried by Temporal, then left to the
next run) never holds the others back.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.retention import (
        RETENTION_WORKFLOW,
        RETIRE_ACTIVITY,
        HistoryKind,
        RetentionInput,
        RetentionResult,
        RetireInput,
        RetireResult,
    )

ORDER = (HistoryKind.EVENTS, HistoryKind.AUDIT, HistoryKind.DELIVERIES, HistoryKind.OPERATIONS)


@workflow.defn(name=RETENTION_WORKFLOW)
class HistoryRetentionWorkflow:
    @workflow.run
    async def run(self, inp: RetentionInput) -> RetentionResult:
        results: list[RetireResult] = []
        for kind in ORDER:
            try:
                result: RetireResult = await workflow.execute_activity(
                    RETIRE_ACTIVITY[kind],
                    RetireInput(kind),
                    result_type=RetireResult,
                    # The activity stops itself at its 20-minute budget; this is the backstop.
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=5)),
                )
            except ActivityError:
                workflow.logger.warning("retention of %s failed; the next run retries it", kind.value)
                result = RetireResult(kind, complete=False)
            results.append(result)
        return RetentionResult(tuple(results))
