"""Worker interceptor for metrics: activity retries and failures by activity type (a polling
activity's "not yet" is neither).

Log context (workflow, activity, attempt) needs no interceptor: the logging filter reads it
from Temporal's activity and workflow context (`clusterflow.logs`).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from clusterflow import metrics
from clusterflow.workflows.federated_connect import NOT_CONNECTED_YET, check_activity

POLLING_ACTIVITIES = frozenset(check_activity(provider) for provider in ("gcp", "azure"))
POLLING_ERRORS = frozenset({NOT_CONNECTED_YET})


class _ActivityMetrics(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        # A phase's workflow re-runs it itself (workflows/steps.py): each run is a first attempt
        # to Temporal, and the input says which run it is.
        run = getattr(input.args[0], "run", 0) if input.args else 0
        # A polling activity's attempts are its polls (the GCP/Azure connect checks retry until the
        # customer's setup works): neither its attempts nor its "not yet" are retries or failures,
        # so a connect waiting for its customer raises no alert.
        polling = info.activity_type in POLLING_ACTIVITIES
        if (info.attempt > 1 and not polling) or (isinstance(run, int) and run > 1):
            metrics.ACTIVITY_RETRIES.labels(info.activity_type).inc()
        try:
            return await super().execute_activity(input)
        except ApplicationError as err:
            if err.type not in POLLING_ERRORS:
                metrics.ACTIVITY_FAILURES.labels(info.activity_type).inc()
            raise
        except BaseException:
            metrics.ACTIVITY_FAILURES.labels(info.activity_type).inc()
            raise


class MetricsInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityMetrics(next)
