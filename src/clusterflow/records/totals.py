"""Totals of a list: exact up to a bound, the planner's estimate beyond it.

A list answers how many rows match its filters (`totalCount`, `totalItems`). Counting them all
costs every matching index entry, so a history of a million rows made each page 20-50 times
slower than one of ten thousand. Here the count stops at `bound + 1` rows (`LIMIT` inside the
count): at most `bound` matching rows are counted exactly; past that the total is the row
estimate PostgreSQL's planner makes for the same filtered query (from the statistics autovacuum
keeps), never less than `bound + 1`, and marked as an estimate. Either way a total costs at most
`bound + 1` index entries and one plan, whatever the history's size.

The estimate's query gets its values as bind parameters like any other: `EXPLAIN` of a
parameterized statement is planned with the values bound (a custom plan), so it estimates the
rows of this organization and these filters, and no value is ever formatted into SQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from clusterflow.records.db import Executor

Table = Literal["operations", "audit_events"]
"""The tables whose lists answer a total (a fixed identifier, never client input)."""

_LIST_ORDER: dict[Table, str] = {"operations": "id DESC", "audit_events": "occurred_at DESC, id DESC"}
"""Each list's keyset order. The bounded count walks it: every filter's index ends in it (see
migration 0021), so the count is an index-only walk of `bound + 1` entries. Without an order the
planner may pick a sequential scan under the LIMIT, which reads the whole table when an
organization's rows are not spread evenly through it."""


@dataclass(frozen=True)
class Total:
    """How many rows match a list's filters."""

    value: int
    exact: bool
    """False when more than the bound matched: `value` is the planner's estimate, above the bound."""


async def bounded_total(db: Executor, table: Table, filters: str, args: Sequence[Any], bound: int) -> Total:
    """The rows of `table` matching `filters` (SQL over `$1..$n`, with `args` as its values):
    exact when at most `bound` match, else an estimate of at least `bound + 1`."""
    limit = f"${len(args) + 1}"
    counted = await db.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {filters} ORDER BY {_LIST_ORDER[table]} LIMIT {limit})"
        " AS bounded",
        *args,
        bound + 1,
    )
    if int(counted) <= bound:
        return Total(value=int(counted), exact=True)
    plan = await db.fetchval(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} WHERE {filters}", *args)
    return Total(value=max(bound + 1, _planned_rows(plan)), exact=False)


def _planned_rows(plan: Any) -> int:
    """The top node's row estimate of an `EXPLAIN (FORMAT JSON)` answer (decoded by the pool's
    json codec, or text from a connection without it)."""
    document = json.loads(plan) if isinstance(plan, str) else plan
    return round(float(document[0]["Plan"]["Plan Rows"]))
