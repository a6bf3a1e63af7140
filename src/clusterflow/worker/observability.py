"""Worker interceptor for metrics: activity retries and failures by activity type.

Log context (workflow, activity, attempt) needs no interceptor: the logging filter reads it
from Temporal's activity and workflow context (`clusterflow.logs`).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from clusterflow import metrics


class _ActivityMetrics(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        # A phase's workflow re-runs it itself (workflows/steps.py): each run is a first attempt
        # to Temporal, and the input says which run it is.
        run = getattr(input.args[0], "run", 0) if input.args else 0
        if info.attempt > 1 or (isinstance(run, int) and run > 1):
            metrics.ACTIVITY_RETRIES.labels(info.activity_type).inc()
        try:
            return await super().execute_activity(input)
        except BaseException:
            metrics.ACTIVITY_FAILURES.labels(info.activity_type).inc()
            raise


class MetricsInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityMetrics(next)
