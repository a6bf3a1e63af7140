"""Retiring old history in small batches: event logs, audit rows, delivery logs, operations.

Every function here is one batch: a short transaction that deletes at most `limit` rows (or the
events of operations whose `event_count` adds up to at most `limit`), found through an index on
(organization, age), so it locks only the rows it deletes, never a table, and never a row the
API or a worker writes (only finished operations, written audit rows, sent deliveries). The
activity (`activities/retention.py`) calls them until a batch comes back short.

Cut-offs are computed by PostgreSQL (`now()`), the clock every timestamp here was written with.
An operation's event log is retired whole, and the operation is marked `events_retired_at` in
the same transaction, so a reader sees either the whole log or none of it and a note saying why.
Finished operations are deleted only when no other record refers to them (a cloud account,
federated account or kubeconfig keyed by the operation that created it, an update run): the
references are read from PostgreSQL's catalog, so a table added later is respected without
a change here.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterflow.contracts.operations import TERMINAL_STATUSES
from clusterflow.contracts.retention import RetentionDays
from clusterflow.records.db import Conn, Executor

_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


@dataclass(frozen=True)
class OrganizationRetention:
    organization_id: str
    days: RetentionDays


async def organizations(
    db: Executor, defaults: RetentionDays, *, after_id: str | None = None, limit: int = 500
) -> list[OrganizationRetention]:
    """A page of organizations (by ID, after `after_id`) with their retention, defaults filled in."""
    records = await db.fetch(
        """SELECT id, COALESCE(retention_events_days, $2) AS events, COALESCE(retention_audit_days, $3) AS audit,
                  COALESCE(retention_deliveries_days, $4) AS deliveries,
                  COALESCE(retention_operations_days, $5) AS operations
             FROM organizations WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $6""",
        after_id,
        defaults.events,
        defaults.audit,
        defaults.deliveries,
        defaults.operations,
        limit,
    )
    return [
        OrganizationRetention(
            r["id"],
            RetentionDays(events=r["events"], audit=r["audit"], deliveries=r["deliveries"], operations=r["operations"]),
        )
        for r in records
    ]


async def set_organization_retention(
    db: Executor,
    organization_id: str,
    *,
    events: int | None = None,
    audit: int | None = None,
    deliveries: int | None = None,
    operations: int | None = None,
) -> None:
    """The organization's own retention, in days (None: the control plane's default)."""
    await db.execute(
        """UPDATE organizations SET retention_events_days = $2, retention_audit_days = $3,
                  retention_deliveries_days = $4, retention_operations_days = $5
            WHERE id = $1""",
        organization_id,
        events,
        audit,
        deliveries,
        operations,
    )


@dataclass(frozen=True)
class Retired:
    """What one batch removed: rows deleted, and the operations it retired or deleted."""

    rows: int = 0
    operations: int = 0
    more: bool = False
    """The batch was full: there may be more to retire now."""


def _within(candidates: list[tuple[str, int]], limit: int) -> list[str]:
    """The oldest candidates whose events add up to at most `limit` (always at least one, so an
    operation with a huge log is still retired, alone in its batch)."""
    chosen: list[str] = []
    total = 0
    for operation_id, events in candidates:
        if chosen and total + events > limit:
            break
        chosen.append(operation_id)
        total += events
    return chosen


def _count(status: str) -> int:
    return int(status.split()[-1])


async def retire_event_logs(conn: Conn, organization_id: str, days: int, limit: int) -> Retired:
    """Retire the event logs of the organization's operations that finished more than `days`
    ago, oldest first, at most about `limit` events."""
    candidates = await conn.fetch(
        """SELECT id, event_count FROM operations
            WHERE organization_id = $1 AND completed_at IS NOT NULL AND events_retired_at IS NULL
              AND completed_at < now() - make_interval(days => $2) AND status = ANY($4::text[])
            ORDER BY completed_at LIMIT $3""",
        organization_id,
        days,
        limit,
        _TERMINAL,
    )
    chosen = _within([(r["id"], int(r["event_count"])) for r in candidates], limit)
    if not chosen:
        return Retired()
    async with conn.transaction():
        marked = await conn.execute(
            "UPDATE operations SET events_retired_at = now() WHERE id = ANY($1::text[]) AND events_retired_at IS NULL",
            chosen,
        )
        deleted = await conn.execute("DELETE FROM operation_events WHERE operation_id = ANY($1::text[])", chosen)
    more = len(chosen) < len(candidates) or len(candidates) == limit
    return Retired(rows=_count(deleted), operations=_count(marked), more=more)


async def retire_audit(db: Executor, organization_id: str | None, days: int, limit: int) -> Retired:
    """Delete at most `limit` of the organization's audit rows older than `days` (None: the
    rows no organization owns, such as refused keys)."""
    scope = "organization_id = $1" if organization_id is not None else "organization_id IS NULL AND $1::text IS NULL"
    status = await db.execute(
        f"""DELETE FROM audit_events WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM audit_events
                 WHERE {scope} AND occurred_at < now() - make_interval(days => $2) LIMIT $3))""",
        organization_id,
        days,
        limit,
    )
    deleted = _count(status)
    return Retired(rows=deleted, more=deleted == limit)


async def retire_deliveries(db: Executor, organization_id: str, days: int, limit: int) -> Retired:
    """Delete at most `limit` delivery attempts older than `days`, then at most `limit`
    notification events dispatched more than `days` ago (with whatever log they have left)."""
    attempts = await db.execute(
        """DELETE FROM notification_deliveries WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM notification_deliveries
                WHERE organization_id = $1 AND attempted_at < now() - make_interval(days => $2) LIMIT $3))""",
        organization_id,
        days,
        limit,
    )
    events = await db.execute(
        """DELETE FROM notification_outbox WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM notification_outbox
                WHERE organization_id = $1 AND dispatched_at IS NOT NULL
                  AND created_at < now() - make_interval(days => $2) LIMIT $3))""",
        organization_id,
        days,
        limit,
    )
    return Retired(rows=_count(attempts) + _count(events), more=limit in (_count(attempts), _count(events)))


async def _references(db: Executor) -> list[str]:
    """`NOT EXISTS` conditions, one per foreign key that refers to operations (other than the
    event log, which goes with its operation), from the catalog, identifiers quoted by it."""
    keys = await db.fetch(
        """SELECT c.conrelid::regclass::text AS table_name, quote_ident(a.attname) AS column_name
             FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND c.confrelid = 'operations'::regclass
              AND c.conrelid <> 'operation_events'::regclass
            ORDER BY 1, 2"""
    )
    return [f"NOT EXISTS (SELECT 1 FROM {k['table_name']} r WHERE r.{k['column_name']} = o.id)" for k in keys]


async def retire_operations(conn: Conn, organization_id: str, days: int, limit: int) -> Retired:
    """Delete the organization's operations that finished more than `days` ago and that no
    other record refers to, oldest first, with their events: at most `limit` operations and
    about `limit` events."""
    unreferenced = " AND ".join(["TRUE", *await _references(conn)])
    candidates = await conn.fetch(
        f"""SELECT o.id, CASE WHEN o.events_retired_at IS NULL THEN o.event_count ELSE 0 END AS events
              FROM operations o
             WHERE o.organization_id = $1 AND o.completed_at IS NOT NULL
               AND o.completed_at < now() - make_interval(days => $2) AND o.status = ANY($4::text[])
               AND {unreferenced}
             ORDER BY o.completed_at LIMIT $3""",
        organization_id,
        days,
        limit,
        _TERMINAL,
    )
    chosen = _within([(r["id"], int(r["events"])) for r in candidates], limit)
    if not chosen:
        return Retired()
    async with conn.transaction():
        events = await conn.execute("DELETE FROM operation_events WHERE operation_id = ANY($1::text[])", chosen)
        deleted = await conn.execute("DELETE FROM operations WHERE id = ANY($1::text[])", chosen)
    more = len(chosen) < len(candidates) or len(candidates) == limit
    return Retired(rows=_count(events) + _count(deleted), operations=_count(deleted), more=more)


@dataclass(frozen=True)
class RetentionOverrides:
    """An organization's own retention in days; None where it follows the default."""

    events: int | None
    audit: int | None
    deliveries: int | None
    operations: int | None


async def organization_overrides(db: Executor, organization_id: str) -> RetentionOverrides | None:
    """The organization's own retention, or None if there is no such organization."""
    record = await db.fetchrow(
        """SELECT retention_events_days, retention_audit_days, retention_deliveries_days, retention_operations_days
             FROM organizations WHERE id = $1""",
        organization_id,
    )
    if record is None:
        return None
    return RetentionOverrides(
        events=record["retention_events_days"],
        audit=record["retention_audit_days"],
        deliveries=record["retention_deliveries_days"],
        operations=record["retention_operations_days"],
    )
