"""CatalogRefresh: read each enabled provider's catalog from its cloud, one activity each.

Started by a Temporal schedule the workers keep in place (`worker/schedules.py`), so it runs once
per `CLUSTERFLOW_CATALOG_REFRESH_INTERVAL_SECONDS` however many workers there are, and an
operator can trigger or pause it in Temporal's UI. Providers are refreshed one after another and
independently: one cloud failing leaves the others' refresh (and its own last good catalog)
untouched. The activity reports a cloud's failure in its result instead of raising, so Temporal
retries only what a retry can fix (a worker lost mid-refresh); the next scheduled run is the
retry for a cloud that was down.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from clusterflow.catalog.refresh import (
        REFRESH_ACTIVITY,
        REFRESH_WORKFLOW,
        REFRESHABLE,
        CatalogRefreshInput,
        CatalogRefreshResult,
        ProviderRefreshInput,
        ProviderRefreshResult,
    )


@workflow.defn(name=REFRESH_WORKFLOW)
class CatalogRefreshWorkflow:
    @workflow.run
    async def run(self, inp: CatalogRefreshInput) -> CatalogRefreshResult:
        results: list[ProviderRefreshResult] = []
        for provider in (p for p in inp.providers if p in REFRESHABLE):
            result: ProviderRefreshResult = await workflow.execute_activity(
                REFRESH_ACTIVITY,
                ProviderRefreshInput(provider),
                result_type=ProviderRefreshResult,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1)),
            )
            results.append(result)
        return CatalogRefreshResult(tuple(results))
