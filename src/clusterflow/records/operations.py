"""Operation records and their event log: the truth clients poll and stream.

Status changes are guarded transitions (`UPDATE ... WHERE status = ANY(allowed)`), so a terminal
status never changes again however often a retried activity repeats a write. Events go through
the `append_operation_event` SQL function (see migration 0001) for contiguous sequences.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clusterflow import metrics
from clusterflow.contracts.notifications import Topic
from clusterflow.contracts.operations import ACTIVE_STATUSES, TERMINAL_STATUSES, EventInput, OperationStatus
from clusterflow.records import notifications
from clusterflow.records.db import Conn, Executor, Record
from clusterflow.records.errors import ClusterBusy
from clusterflow.records.totals import Total, bounded_total

RECENT_EVENTS = 20

_COLUMNS = """id, organization_id, cluster_id, cluster_name, operation_type, status, current_phase,
    progress_percentage, message, error, attempt, requested_by, idempotency_key, metadata, result,
    workflow_type, workflow_started_at, event_count, created_at, started_at, last_update, completed_at,
    approval_expires_at, approval_required_role, approval_plan_hash, approval_decision, approval_decided_by,
    approval_decided_at, approval_comment, approval_required_count, approval_require_different_approver,
    approval_rule, approval_received, cancel_requested_at, cancel_requested_by, cancel_forced,
    events_retired_at"""

_ACTIVE = [s.value for s in ACTIVE_STATUSES]


@dataclass(frozen=True)
class ApprovalRule:
    """The policy rule an operation's approval was asked under (`approval_rule`)."""

    name: str
    label_selector: str | None = None


@dataclass(frozen=True)
class ApprovalReceipt:
    """One decision on an operation (`approval_received`): who, when, what, and why."""

    by: str
    at: datetime
    decision: str
    """APPROVE or REJECT."""
    comment: str | None


def _rule(value: dict[str, Any] | None) -> ApprovalRule | None:
    if value is None:
        return None
    return ApprovalRule(name=str(value.get("name", "default")), label_selector=value.get("labelSelector"))


def _receipt(value: dict[str, Any]) -> ApprovalReceipt:
    return ApprovalReceipt(
        by=str(value["by"]),
        at=datetime.fromisoformat(value["at"]),
        decision=str(value["decision"]),
        comment=value.get("comment"),
    )


@dataclass(frozen=True)
class OperationRow:
    """An operation record as clients read it (`_COLUMNS`): status, progress, approval, cancel."""

    id: str
    organization_id: str
    cluster_id: str | None
    cluster_name: str | None
    operation_type: str
    status: str
    current_phase: str | None
    progress_percentage: int
    message: str | None
    error: dict[str, Any] | None
    """The failure document (`code`, `message`, `details`...; `api.schemas.operations.OperationErrorView`)."""
    attempt: int
    requested_by: str | None
    idempotency_key: str | None
    metadata: dict[str, Any]
    """Operation-type specific facts (`cleanedUp`, `leftBehind`, `upgradePlan`...), owned by the workflows."""
    result: dict[str, Any] | None
    """What a successful operation produced; its shape depends on the operation type."""
    workflow_type: str
    workflow_started_at: datetime | None
    event_count: int
    created_at: datetime
    started_at: datetime | None
    last_update: datetime
    completed_at: datetime | None
    approval_expires_at: datetime | None
    approval_required_role: str | None
    approval_plan_hash: str | None
    approval_decision: str | None
    approval_decided_by: str | None
    approval_decided_at: datetime | None
    approval_comment: str | None
    approval_required_count: int | None
    approval_require_different_approver: bool
    approval_rule: ApprovalRule | None
    approval_received: tuple[ApprovalReceipt, ...]
    """Every decision taken on the operation, in order (`approval_decision` is the last word)."""
    cancel_requested_at: datetime | None
    cancel_requested_by: str | None
    cancel_forced: bool
    events_retired_at: datetime | None = None
    """When retention removed the finished operation's event log (the summary stays)."""


def _operation(record: Record) -> OperationRow:
    return OperationRow(
        id=record["id"],
        organization_id=record["organization_id"],
        cluster_id=record["cluster_id"],
        cluster_name=record["cluster_name"],
        operation_type=record["operation_type"],
        status=record["status"],
        current_phase=record["current_phase"],
        progress_percentage=record["progress_percentage"],
        message=record["message"],
        error=record["error"],
        attempt=record["attempt"],
        requested_by=record["requested_by"],
        idempotency_key=record["idempotency_key"],
        metadata=record["metadata"],
        result=record["result"],
        workflow_type=record["workflow_type"],
        workflow_started_at=record["workflow_started_at"],
        event_count=record["event_count"],
        created_at=record["created_at"],
        started_at=record["started_at"],
        last_update=record["last_update"],
        completed_at=record["completed_at"],
        approval_expires_at=record["approval_expires_at"],
        approval_required_role=record["approval_required_role"],
        approval_plan_hash=record["approval_plan_hash"],
        approval_decision=record["approval_decision"],
        approval_decided_by=record["approval_decided_by"],
        approval_decided_at=record["approval_decided_at"],
        approval_comment=record["approval_comment"],
        approval_required_count=record["approval_required_count"],
        approval_require_different_approver=record["approval_require_different_approver"],
        approval_rule=_rule(record["approval_rule"]),
        approval_received=tuple(_receipt(r) for r in record["approval_received"] or ()),
        cancel_requested_at=record["cancel_requested_at"],
        cancel_requested_by=record["cancel_requested_by"],
        cancel_forced=record["cancel_forced"],
        events_retired_at=record["events_retired_at"],
    )


@dataclass(frozen=True)
class EventRow:
    """One event of an operation's log (`operation_events`)."""

    operation_id: str
    sequence: int
    event_key: str
    kind: str
    timestamp: datetime
    level: str
    phase: str | None
    progress_percentage: int | None
    message: str
    raw_output: str | None
    labels: dict[str, str]


def _event_row(record: Record) -> EventRow:
    return EventRow(
        operation_id=record["operation_id"],
        sequence=record["sequence"],
        event_key=record["event_key"],
        kind=record["kind"],
        timestamp=record["timestamp"],
        level=record["level"],
        phase=record["phase"],
        progress_percentage=record["progress_percentage"],
        message=record["message"],
        raw_output=record["raw_output"],
        labels=record["labels"],
    )


@dataclass(frozen=True)
class OperationsPage:
    """A keyset page of operations, newest first."""

    rows: list[OperationRow]
    total: Total
    """How many operations match the filters, on every page: exact up to the bound, else estimated."""
    next_page_token: str | None


@dataclass(frozen=True)
class UnstartedOperation:
    """A PENDING operation whose workflow start was never confirmed: what to start."""

    id: str
    workflow_type: str
    workflow_input: dict[str, Any]
    """The workflow's input document (a `contracts.operations` input, as JSON)."""


@dataclass(frozen=True)
class ActiveOperation:
    """An operation that has not finished, as the cluster lock weighs it."""

    id: str
    operation_type: str
    status: str


@dataclass
class Approval:
    """What an operation waiting for approval needs; all None when no approval is needed."""

    token_hash: bytes | None = None
    expires_at: datetime | None = None
    required_role: str | None = None
    plan_hash: str | None = None
    required_count: int | None = None
    require_different_approver: bool = False
    rule: ApprovalRule | None = None


_TERMINAL = [s.value for s in TERMINAL_STATUSES]

# The notification topic each status change announces, queued in the same transaction.
_TOPIC_OF: dict[str, str] = {
    OperationStatus.RUNNING: Topic.OPERATION_STARTED,
    OperationStatus.AWAITING_APPROVAL: Topic.OPERATION_AWAITING_APPROVAL,
    OperationStatus.SUCCEEDED: Topic.OPERATION_SUCCEEDED,
    OperationStatus.FAILED: Topic.OPERATION_FAILED,
    OperationStatus.CANCELLED: Topic.OPERATION_CANCELLED,
    OperationStatus.REJECTED: Topic.OPERATION_REJECTED,
}


def _rule_json(rule: ApprovalRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    value: dict[str, Any] = {"name": rule.name}
    if rule.label_selector is not None:
        value["labelSelector"] = rule.label_selector
    return value


async def insert(
    conn: Conn,
    *,
    operation_id: str,
    organization_id: str,
    cluster_id: str | None,
    cluster_name: str | None,
    operation_type: str,
    requested_by: str | None,
    idempotency_key: str | None,
    workflow_type: str,
    workflow_input: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    message: str | None = None,
    approval: Approval | None = None,
) -> None:
    """Insert a PENDING operation; a cluster with an active operation raises ClusterBusy."""
    approval = approval or Approval()
    # DO NOTHING rather than catching the unique violation: the caller's transaction stays
    # usable without a savepoint (two more round trips per insert).
    inserted = await conn.fetchval(
        """INSERT INTO operations (id, organization_id, cluster_id, cluster_name, operation_type,
               status, requested_by, idempotency_key, workflow_type, workflow_input, metadata, message,
               approval_token_hash, approval_expires_at, approval_required_role, approval_plan_hash,
               approval_required_count, approval_require_different_approver, approval_rule)
           VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
           ON CONFLICT DO NOTHING RETURNING true""",
        operation_id,
        organization_id,
        cluster_id,
        cluster_name,
        operation_type,
        requested_by,
        idempotency_key,
        workflow_type,
        workflow_input,
        metadata or {},
        message or "accepted, waiting for a worker",
        approval.token_hash,
        approval.expires_at,
        approval.required_role,
        approval.plan_hash,
        approval.required_count,
        approval.require_different_approver,
        _rule_json(approval.rule),
    )
    if not inserted:
        active = await conn.fetchval(
            "SELECT id FROM operations WHERE cluster_id = $1 AND status = ANY($2::text[])",
            cluster_id,
            _ACTIVE,
        )
        raise ClusterBusy(cluster_id or "", active)


async def get(db: Executor, organization_id: str, operation_id: str) -> OperationRow | None:
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM operations WHERE organization_id = $1 AND id = $2",
        organization_id,
        operation_id,
    )
    return _operation(record) if record is not None else None


async def latest_for_cluster(db: Executor, organization_id: str, cluster_id: str) -> OperationRow | None:
    record = await db.fetchrow(
        f"""SELECT {_COLUMNS} FROM operations WHERE organization_id = $1 AND cluster_id = $2
             ORDER BY id DESC LIMIT 1""",
        organization_id,
        cluster_id,
    )
    return _operation(record) if record is not None else None


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


_OPERATION_ID = re.compile(r"op_[0-9A-Za-z]{1,64}")


def decode_page_token(token: str) -> str:
    """Raise ValueError on a token we did not issue: it must decode to an operation ID (a NUL
    byte or any other character PostgreSQL text refuses never reaches a query)."""
    padded = token + "=" * (-len(token) % 4)
    value = base64.urlsafe_b64decode(padded.encode()).decode()
    if not _OPERATION_ID.fullmatch(value):
        raise ValueError("not a page token")
    return value


async def list_page(
    db: Executor,
    organization_id: str,
    *,
    cluster_id: str | None = None,
    operation_type: str | None = None,
    status: str | None = None,
    limit: int = 100,
    after_id: str | None = None,
    exact_total_limit: int,
) -> OperationsPage:
    """A keyset page of operations, newest first, with the total matching and the next page token.

    Keyset on the ULID operation ID (time ordered), so pages stay stable while new operations
    are inserted at the head, and a token outlives the row it names (retention).
    The SQL names only the filters given: a `($n IS NULL OR col = $n)` form would let a cached
    generic plan scan the whole organization for a deep token or a cluster's history.
    The total is exact up to `exact_total_limit` matching operations, estimated beyond (`totals`).
    """
    args: list[Any] = [organization_id]
    conditions = ["organization_id = $1"]
    for column, value in (("cluster_id", cluster_id), ("operation_type", operation_type), ("status", status)):
        if value is not None:
            args.append(value)
            conditions.append(f"{column} = ${len(args)}")
    filters = " AND ".join(conditions)
    keyset = ""
    if after_id is not None:
        keyset = f" AND id < ${len(args) + 1}"
    page_args = [*args, after_id] if after_id is not None else list(args)
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM operations WHERE {filters}{keyset} ORDER BY id DESC LIMIT ${len(page_args) + 1}",
        *page_args,
        limit + 1,
    )
    total = await bounded_total(db, "operations", filters, args, exact_total_limit)
    next_token = encode_page_token(rows[limit - 1]["id"]) if len(rows) > limit else None
    return OperationsPage(rows=[_operation(r) for r in rows[:limit]], total=total, next_page_token=next_token)


async def recent_events(db: Executor, operation_id: str, limit: int = RECENT_EVENTS) -> list[EventRow]:
    """The last `limit` events, oldest first."""
    rows = await db.fetch(
        """SELECT * FROM (SELECT * FROM operation_events WHERE operation_id = $1
             ORDER BY sequence DESC LIMIT $2) AS recent ORDER BY sequence""",
        operation_id,
        limit,
    )
    return [_event_row(r) for r in rows]


async def events_after(db: Executor, operation_id: str, after_sequence: int, limit: int) -> list[EventRow]:
    rows = await db.fetch(
        """SELECT * FROM operation_events WHERE operation_id = $1 AND sequence > $2
            ORDER BY sequence LIMIT $3""",
        operation_id,
        after_sequence,
        limit,
    )
    return [_event_row(r) for r in rows]


async def append_event(
    db: Executor,
    operation_id: str,
    event_key: str,
    message: str,
    *,
    kind: str = "log",
    level: str = "INFO",
    phase: str | None = None,
    progress_percentage: int | None = None,
    raw_output: str | None = None,
    labels: dict[str, str] | None = None,
) -> int:
    """Append an event (idempotent by `event_key`); return its sequence number."""
    sequence = await db.fetchval(
        "SELECT append_operation_event($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        operation_id,
        event_key,
        kind,
        level,
        phase,
        progress_percentage,
        message,
        raw_output,
        labels or {},
    )
    metrics.EVENTS_WRITTEN.labels(kind).inc()
    return int(sequence)


async def append_events(db: Executor, events: list[EventInput]) -> None:
    """Append events in order, in one round trip and one transaction (each idempotent by key)."""
    await db.executemany(
        "SELECT append_operation_event($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                e.operation_id,
                e.event_key,
                e.kind,
                e.level,
                e.phase,
                e.progress_percentage,
                e.message,
                e.raw_output,
                e.labels or {},
            )
            for e in events
        ],
    )
    for e in events:
        metrics.EVENTS_WRITTEN.labels(e.kind).inc()


async def begin(conn: Conn, operation_id: str, awaiting_approval: bool = False) -> str | None:
    """PENDING -> RUNNING (or AWAITING_APPROVAL) when the workflow starts; return the status
    after, None if the operation is unknown.

    Also marks the workflow as started, which tells the reconciler to leave it alone.
    """
    target = OperationStatus.AWAITING_APPROVAL if awaiting_approval else OperationStatus.RUNNING
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE operations SET status = $2, started_at = COALESCE(started_at, now()),
                      workflow_started_at = COALESCE(workflow_started_at, now()), last_update = now()
                WHERE id = $1 AND status = 'PENDING'
                RETURNING status, operation_type""",
            operation_id,
            target,
        )
        if row is not None:
            await append_event(
                conn,
                operation_id,
                "operation/started",
                "operation started" + (", waiting for approval" if awaiting_approval else ""),
                kind="status",
                progress_percentage=0,
                labels={"status": target},
            )
            await notifications.enqueue_for_operation(conn, operation_id, _TOPIC_OF[target])
            metrics.operation_transition(row["operation_type"], target)
            return target
        status = await conn.fetchval("SELECT status FROM operations WHERE id = $1", operation_id)
        return str(status) if status is not None else None


async def request_cancel(conn: Conn, operation_id: str, requested_by: str, forced: bool) -> str | None:
    """Mark an active operation CANCELLING; return its status before, None if it was terminal."""
    async with conn.transaction():
        before = await conn.fetchval("SELECT status FROM operations WHERE id = $1 FOR UPDATE", operation_id)
        if before not in _ACTIVE:
            return None
        await conn.execute(
            """UPDATE operations SET status = 'CANCELLING', last_update = now(),
                      cancel_requested_at = COALESCE(cancel_requested_at, now()),
                      cancel_requested_by = COALESCE(cancel_requested_by, $2),
                      cancel_forced = cancel_forced OR $3
                WHERE id = $1""",
            operation_id,
            requested_by,
            forced,
        )
        await append_event(
            conn,
            operation_id,
            "operation/cancel-requested" + ("/forced" if forced else ""),
            f"{'force ' if forced else ''}cancel requested by {requested_by}",
            kind="status",
            level="WARN",
            labels={"status": OperationStatus.CANCELLING},
        )
        return str(before)


async def finish(
    conn: Conn,
    operation_id: str,
    status: str,
    message: str,
    *,
    error: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Move an active operation to a terminal status; false if it already was terminal.

    `metadata` is merged into the record's metadata (for example what a cancel cleaned up).
    """
    if status not in _TERMINAL:
        raise ValueError(f"{status} is not terminal")
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE operations SET status = $2, error = $3, result = $4, completed_at = now(),
                      last_update = now(), metadata = metadata || $6,
                      progress_percentage = CASE WHEN $2 = 'SUCCEEDED' THEN 100 ELSE progress_percentage END
                WHERE id = $1 AND status = ANY($5::text[])
                RETURNING id, operation_type, extract(epoch FROM completed_at - created_at)::float8 AS seconds""",
            operation_id,
            status,
            error,
            result,
            _ACTIVE,
            metadata or {},
        )
        if row is None:
            return False
        await append_event(
            conn,
            operation_id,
            f"operation/{status.lower()}",
            message,
            kind="status",
            level={"FAILED": "ERROR", "CANCELLED": "WARN"}.get(status, "INFO"),
            progress_percentage=100 if status == OperationStatus.SUCCEEDED else None,
            labels={"status": status} | ({"errorCode": error["code"]} if error else {}),
        )
        await notifications.enqueue_for_operation(conn, operation_id, _TOPIC_OF[status])
        metrics.operation_transition(row["operation_type"], status, row["seconds"])
        return True


async def unstarted(conn: Conn, older_than_seconds: float, limit: int = 100) -> list[UnstartedOperation]:
    """PENDING operations whose workflow start was never confirmed, oldest first; locked
    (SKIP LOCKED) so concurrent reconcilers split the work."""
    rows = await conn.fetch(
        """SELECT id, workflow_type, workflow_input FROM operations
            WHERE status = 'PENDING' AND workflow_started_at IS NULL
              AND created_at < now() - make_interval(secs => $1)
            ORDER BY created_at LIMIT $2
            FOR UPDATE SKIP LOCKED""",
        older_than_seconds,
        limit,
    )
    return [UnstartedOperation(r["id"], r["workflow_type"], r["workflow_input"]) for r in rows]


@dataclass(frozen=True)
class IdleCursor:
    """Where a walk through idle operations stopped: (last_update, id) of the last one seen."""

    last_update: datetime
    operation_id: str


async def idle_active(
    db: Executor, idle_seconds: float, limit: int = 20, after: IdleCursor | None = None
) -> tuple[list[str], IdleCursor | None]:
    """Operations not finished, whose workflow started, whose record has not changed for
    `idle_seconds`: the reconciler asks Temporal whether their workflow still runs.

    A page at a time, oldest first, after `after`; returns the page and the cursor for the next
    one (None once the walk is through). Walking on matters: operations legitimately idle
    (awaiting approval for a day, a long cloud wait) must not hide the abandoned ones behind them."""
    rows = await db.fetch(
        """SELECT id, last_update FROM operations
            WHERE status = ANY($1::text[]) AND workflow_started_at IS NOT NULL
              AND last_update < now() - make_interval(secs => $2)
              AND ($4::timestamptz IS NULL OR (last_update, id) > ($4::timestamptz, $5::text))
            ORDER BY last_update, id LIMIT $3""",
        _ACTIVE,
        idle_seconds,
        limit,
        after.last_update if after else None,
        after.operation_id if after else None,
    )
    cursor = IdleCursor(rows[-1]["last_update"], str(rows[-1]["id"])) if len(rows) == limit else None
    return [str(r["id"]) for r in rows], cursor


async def mark_workflow_started(db: Executor, operation_id: str) -> None:
    await db.execute(
        "UPDATE operations SET workflow_started_at = COALESCE(workflow_started_at, now()) WHERE id = $1",
        operation_id,
    )


async def active_for_cluster(db: Executor, cluster_id: str) -> list[ActiveOperation]:
    """The cluster's operations that are not finished (at most a delete and one other)."""
    rows = await db.fetch(
        "SELECT id, operation_type, status FROM operations WHERE cluster_id = $1 AND status = ANY($2::text[])",
        cluster_id,
        _ACTIVE,
    )
    return [ActiveOperation(r["id"], r["operation_type"], r["status"]) for r in rows]


async def status_of(db: Executor, operation_id: str) -> str | None:
    value = await db.fetchval("SELECT status FROM operations WHERE id = $1", operation_id)
    return str(value) if value is not None else None


@dataclass(frozen=True)
class OperationTarget:
    """What an operation acts on: its type and the cluster (None for organization-wide ones)."""

    operation_type: str
    cluster_id: str | None


async def target_of(db: Executor, operation_id: str) -> OperationTarget | None:
    """The operation's type and cluster, or None if there is no such operation."""
    row = await db.fetchrow("SELECT cluster_id, operation_type FROM operations WHERE id = $1", operation_id)
    if row is None:
        return None
    return OperationTarget(operation_type=row["operation_type"], cluster_id=row["cluster_id"])


async def cluster_of(db: Executor, operation_id: str) -> str | None:
    """The cluster the operation acts on (None for organization-wide operations or no such operation)."""
    value = await db.fetchval("SELECT cluster_id FROM operations WHERE id = $1", operation_id)
    return str(value) if value is not None else None


async def awaiting_decision_by(db: Executor, organization_id: str, actor: str, limit: int = 100) -> list[OperationRow]:
    """Operations awaiting approval that `actor` (a key) may still decide, oldest first: ones it
    has not decided yet, and not its own when the operation requires a different approver."""
    records = await db.fetch(
        f"""SELECT {_COLUMNS} FROM operations
             WHERE organization_id = $1 AND status = 'AWAITING_APPROVAL'
               AND NOT approval_received @> jsonb_build_array(jsonb_build_object('by', $2::text))
               AND NOT (approval_require_different_approver AND requested_by IS NOT DISTINCT FROM $2)
             ORDER BY id LIMIT $3""",
        organization_id,
        actor,
        limit,
    )
    return [_operation(r) for r in records]


async def recent_ids_by_cluster_name(
    db: Executor, organization_id: str, cluster_name: str, limit: int = 5
) -> list[str]:
    """IDs of the newest operations on clusters of this name, deleted clusters included."""
    rows = await db.fetch(
        "SELECT id FROM operations WHERE organization_id = $1 AND cluster_name = $2 ORDER BY id DESC LIMIT $3",
        organization_id,
        cluster_name,
        limit,
    )
    return [str(r["id"]) for r in rows]


async def awaiting_approval_on_cluster(db: Executor, cluster_id: str) -> str | None:
    """ID of the cluster's newest operation waiting for an approval decision."""
    value = await db.fetchval(
        "SELECT id FROM operations WHERE cluster_id = $1 AND status = 'AWAITING_APPROVAL' ORDER BY id DESC LIMIT 1",
        cluster_id,
    )
    return str(value) if value is not None else None


async def withdraw_unstarted(conn: Conn, operation_id: str) -> bool:
    """Delete the operation if it is PENDING and its workflow never began; true if it was.

    For an enqueue the API refused after committing (the workflow start failed): the client was
    told nothing was enqueued, so nothing stays, not even a FAILED record in the cluster's
    history. A workflow that did start after all finds no record at `begin` and ends at once;
    one that began first has marked the row started, and then it stays.

    A row locked by a worker's reconciler (`unstarted`, which holds it while its own start
    call runs, however long Temporal takes) is not waited for: the reconciler owns its start
    now, so it stays, and the caller answers as for a started operation. Waiting would hold
    the request, and a pooled connection, for as long as Temporal hangs."""
    withdrawn = await conn.fetchval(
        """WITH claimed AS (
                SELECT id FROM operations
                 WHERE id = $1 AND status = 'PENDING' AND workflow_started_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM operation_events WHERE operation_id = $1)
                   FOR UPDATE SKIP LOCKED)
            DELETE FROM operations o USING claimed WHERE o.id = claimed.id
            RETURNING true""",
        operation_id,
    )
    return bool(withdrawn)
