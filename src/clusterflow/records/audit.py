"""The audit log: one row per mutation, decision, cancel, key change and refused request.

Rows are written by the API's audit middleware after the response is known, so the outcome
(`success`, `status_code`) is the one the client saw. Details never hold secrets: the
middleware records the route template and non-secret query parameters, never bodies.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clusterflow.ids import new_id
from clusterflow.records.db import Conn, Executor, Record
from clusterflow.records.totals import Total, bounded_total

_COLUMNS = """id, organization_id, occurred_at, event_type, action, resource, resource_id, actor, actor_role,
    request_id, ip_address, user_agent, success, status_code, details"""


@dataclass
class AuditEvent:
    organization_id: str | None
    event_type: str
    action: str
    resource: str
    resource_id: str | None
    actor: str | None
    actor_role: str | None
    request_id: str | None
    ip_address: str | None
    user_agent: str | None
    success: bool
    status_code: int
    details: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    """When it happened (the request's answer), not when the row was written; now if unset."""


@dataclass(frozen=True)
class AuditEventRow:
    """A written audit event (`_COLUMNS`)."""

    id: str
    organization_id: str | None
    occurred_at: datetime
    event_type: str
    action: str
    resource: str
    resource_id: str | None
    actor: str | None
    actor_role: str | None
    request_id: str | None
    ip_address: str | None
    user_agent: str | None
    success: bool
    status_code: int
    details: dict[str, Any] | None
    """Free-form: its shape is owned by whoever writes the event (the API's audit middleware,
    `clusterflow.api.audit_log`, records the route template and non-secret query parameters)."""


def _row(record: Record) -> AuditEventRow:
    return AuditEventRow(
        id=record["id"],
        organization_id=record["organization_id"],
        occurred_at=record["occurred_at"],
        event_type=record["event_type"],
        action=record["action"],
        resource=record["resource"],
        resource_id=record["resource_id"],
        actor=record["actor"],
        actor_role=record["actor_role"],
        request_id=record["request_id"],
        ip_address=record["ip_address"],
        user_agent=record["user_agent"],
        success=record["success"],
        status_code=record["status_code"],
        details=record["details"],
    )


_INSERT = f"""INSERT INTO audit_events ({_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"""


def _values(event_id: str, event: AuditEvent) -> tuple[Any, ...]:
    return (
        event_id,
        event.organization_id,
        event.occurred_at or datetime.now(UTC),
        event.event_type,
        event.action,
        event.resource,
        event.resource_id,
        event.actor,
        event.actor_role,
        event.request_id,
        event.ip_address,
        event.user_agent,
        event.success,
        event.status_code,
        event.details,
    )


async def record(db: Executor, event: AuditEvent) -> str:
    event_id = new_id("aud")
    await db.execute(_INSERT, *_values(event_id, event))
    return event_id


async def record_many(db: Executor, events: list[AuditEvent]) -> None:
    """Write several events in one round trip and one transaction (all or none)."""
    await db.executemany(_INSERT, [_values(new_id("aud"), event) for event in events])


@dataclass
class AuditFilter:
    event_type: str | None = None
    action: str | None = None
    actor: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def _where(organization_id: str, where: AuditFilter) -> tuple[str, list[Any]]:
    """The organization and the filters given, as SQL and its parameters. Only the filters given
    are in the SQL: a `($n IS NULL OR col = $n)` form would let a cached generic plan ignore the
    keyset range and the filter, and read the organization's whole log."""
    args: list[Any] = [organization_id]
    conditions = ["organization_id = $1"]
    for condition, value in (
        ("event_type = $", where.event_type),
        ("action = $", where.action),
        ("actor = $", where.actor),
        ("occurred_at >= $", where.start),
        ("occurred_at <= $", where.end),
    ):
        if value is not None:
            args.append(value)
            conditions.append(f"{condition}{len(args)}")
    return " AND ".join(conditions), args


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditEventRow]
    total: Total
    """How many events match the filters: exact up to the bound, else estimated (`totals`)."""
    next_page_token: str | None
    """Continues after the last row (keyset on occurred_at, id); None on the last page."""


_AUDIT_ID = re.compile(r"aud_[0-9A-Za-z]{1,64}")


def encode_page_token(row: AuditEventRow) -> str:
    value = f"{row.occurred_at.astimezone(UTC).isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    """The (occurred_at, id) a page token continues after; ValueError for a token this API did
    not issue. The position needs no row to exist: a token outlives the rows retention retires."""
    try:
        value = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
        when, _, event_id = value.partition("|")
        occurred_at = datetime.fromisoformat(when)
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise ValueError("not a page token") from err
    if occurred_at.tzinfo is None or not _AUDIT_ID.fullmatch(event_id):
        raise ValueError("not a page token")
    return occurred_at, event_id


def positional_window_allows(page_number: int, page_size: int, window: int) -> bool:
    """Whether a positional page lies within the first `window` rows (page 1 always does): as
    Elasticsearch's `max_result_window`, depth is for `pageToken`, whose cost does not grow."""
    return page_number == 1 or page_number * page_size <= window


_ALIASED_COLUMNS = ", ".join(f"a.{column.strip()}" for column in _COLUMNS.split(","))


async def page(
    db: Executor,
    organization_id: str,
    where: AuditFilter,
    page_number: int,
    page_size: int,
    after: tuple[datetime, str] | None = None,
    *,
    exact_total_limit: int,
) -> AuditPage:
    """A page, newest first. With `after` (a decoded page token) a keyset page: its cost does
    not grow with depth, and it is stable while new events arrive. Without it, the reference
    API's page number: positional, it shifts as events arrive; callers keep it within the first
    rows of their window (`positional_window_allows`). The rows it skips are read from the
    index alone (a deferred join: the keys of the page by OFFSET, then the full rows of those
    keys), so a skip costs index entries, not rows. The total is exact up to
    `exact_total_limit` matching events, estimated beyond."""
    sql, args = _where(organization_id, where)
    n = len(args)
    if after is not None:
        records = await db.fetch(
            f"""SELECT {_COLUMNS} FROM audit_events WHERE {sql} AND (occurred_at, id) < (${n + 1}, ${n + 2})
                 ORDER BY occurred_at DESC, id DESC LIMIT ${n + 3}""",
            *args,
            *after,
            page_size + 1,
        )
    else:
        records = await db.fetch(
            f"""SELECT {_ALIASED_COLUMNS} FROM (
                   SELECT occurred_at, id FROM audit_events WHERE {sql}
                    ORDER BY occurred_at DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}
                 ) AS keys JOIN audit_events a ON a.id = keys.id
                 ORDER BY keys.occurred_at DESC, keys.id DESC""",
            *args,
            page_size + 1,
            (page_number - 1) * page_size,
        )
    total = await bounded_total(db, "audit_events", sql, args, exact_total_limit)
    rows = [_row(r) for r in records]
    token = encode_page_token(rows[page_size - 1]) if len(rows) > page_size else None
    return AuditPage(rows[:page_size], total, token)


async def get(db: Executor, organization_id: str, event_id: str) -> AuditEventRow | None:
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM audit_events WHERE organization_id = $1 AND id = $2", organization_id, event_id
    )
    return _row(record) if record is not None else None


async def stream(
    conn: Conn, organization_id: str, where: AuditFilter, batch: int = 500
) -> AsyncIterator[AuditEventRow]:
    """Every matching event, oldest first, read with a server-side cursor (constant memory)."""
    sql, args = _where(organization_id, where)
    async with conn.transaction():
        async for row in conn.cursor(
            f"SELECT {_COLUMNS} FROM audit_events WHERE {sql} ORDER BY occurred_at, id", *args, prefetch=batch
        ):
            yield _row(row)


async def stats(db: Executor, organization_id: str, days: int) -> dict[str, Any]:
    since = "now() - make_interval(days => $2)"
    by_type = await db.fetch(
        f"""SELECT event_type, count(*) AS n FROM audit_events WHERE organization_id = $1 AND occurred_at >= {since}
             GROUP BY event_type""",
        organization_id,
        days,
    )
    by_action = await db.fetch(
        f"""SELECT action, count(*) AS n FROM audit_events WHERE organization_id = $1 AND occurred_at >= {since}
             GROUP BY action""",
        organization_id,
        days,
    )
    top = await db.fetch(
        f"""SELECT a.actor, k.name, count(*) AS n FROM audit_events a LEFT JOIN api_keys k ON k.id = a.actor
             WHERE a.organization_id = $1 AND a.occurred_at >= {since} AND a.actor IS NOT NULL
             GROUP BY a.actor, k.name ORDER BY n DESC LIMIT 10""",
        organization_id,
        days,
    )
    return {
        "events_by_type": {r["event_type"]: r["n"] for r in by_type},
        "events_by_action": {r["action"]: r["n"] for r in by_action},
        "top_users": [{"user_id": r["actor"], "name": r["name"] or r["actor"], "event_count": r["n"]} for r in top],
        "total_events": sum(r["n"] for r in by_type),
    }
