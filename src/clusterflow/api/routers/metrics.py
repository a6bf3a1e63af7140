"""`/metrics` in the Prometheus text format: this process's counters plus gauges read from
PostgreSQL at scrape time (see `clusterflow.metrics` for which is which and how to aggregate)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clusterflow import metrics
from clusterflow.api.deps import Pool
from clusterflow.records import stats

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus_metrics(pool: Pool) -> Response:
    try:
        rows = await asyncio.wait_for(stats.operations_in_flight(pool), 2)
    except Exception:  # a slow or absent database must not break the scrape of the rest
        log.warning("metrics: could not read operation counts from the database", exc_info=True)
    else:
        metrics.OPERATIONS_IN_FLIGHT.clear()
        waiting = 0
        for row in rows:
            metrics.OPERATIONS_IN_FLIGHT.labels(row.operation_type, row.status).set(row.count)
            if row.status == "AWAITING_APPROVAL":
                waiting += row.count
        metrics.APPROVALS_WAITING.set(waiting)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
