"""Aggregate counts for metrics, read at scrape time."""

from __future__ import annotations

import asyncpg

from clusterflow.contracts.operations import ACTIVE_STATUSES
from clusterflow.records.db import Executor


async def operations_in_flight(db: Executor) -> list[asyncpg.Record]:
    """(operation_type, status, count) of every operation not yet terminal."""
    rows = await db.fetch(
        """SELECT operation_type, status, count(*)::int AS count FROM operations
            WHERE status = ANY($1::text[]) GROUP BY operation_type, status""",
        [s.value for s in ACTIVE_STATUSES],
    )
    return list(rows)
