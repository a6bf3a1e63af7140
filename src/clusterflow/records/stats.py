"""Aggregate counts for metrics, read at scrape time."""

from __future__ import annotations

from dataclasses import dataclass

from clusterflow.contracts.operations import ACTIVE_STATUSES
from clusterflow.records.db import Executor


@dataclass(frozen=True)
class InFlightCount:
    """How many operations of one type are in one not-yet-terminal status."""

    operation_type: str
    status: str
    count: int


async def operations_in_flight(db: Executor) -> list[InFlightCount]:
    """(operation_type, status, count) of every operation not yet terminal."""
    rows = await db.fetch(
        """SELECT operation_type, status, count(*)::int AS count FROM operations
            WHERE status = ANY($1::text[]) GROUP BY operation_type, status""",
        [s.value for s in ACTIVE_STATUSES],
    )
    return [InFlightCount(r["operation_type"], r["status"], r["count"]) for r in rows]
