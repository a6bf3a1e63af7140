"""Notification integrations, subscriptions, the outbox and the delivery log.

`enqueue` and `enqueue_for_operation` are called inside the transaction of the change they
announce; they write nothing when the organization has no enabled subscription to the topic,
so organizations that never subscribed pay one indexed lookup per status change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from clusterflow.ids import new_id
from clusterflow.records.db import Conn, Executor, Record

_SUBSCRIBED = """EXISTS (SELECT 1 FROM notification_subscriptions s
                  WHERE s.organization_id = {org} AND s.topic = {topic} AND s.enabled)"""


async def enqueue(
    db: Executor, organization_id: str, topic: str, subject: str | None, data: dict[str, Any]
) -> str | None:
    """Queue a notification event; return its ID, None when nobody subscribed to the topic."""
    value = await db.fetchval(
        f"""INSERT INTO notification_outbox (id, organization_id, topic, subject, data)
            SELECT $1, $2, $3, $4, $5 WHERE {_SUBSCRIBED.format(org="$2", topic="$3")}
            RETURNING id""",
        new_id("evt"),
        organization_id,
        topic,
        subject,
        data,
    )
    return str(value) if value is not None else None


async def enqueue_for_operation(db: Executor, operation_id: str, topic: str) -> str | None:
    """Queue an event describing the operation as it is now (call after the status change)."""
    value = await db.fetchval(
        f"""INSERT INTO notification_outbox (id, organization_id, topic, subject, data)
            SELECT $1, o.organization_id, $3, o.id,
                   jsonb_build_object(
                     'operationId', o.id, 'operationType', o.operation_type, 'status', o.status,
                     'clusterId', o.cluster_id, 'clusterName', o.cluster_name, 'message', o.message,
                     'error', o.error, 'requestedBy', o.requested_by,
                     'startedAt', o.started_at, 'completedAt', o.completed_at,
                     'approvalExpiresAt', o.approval_expires_at)
              FROM operations o
             WHERE o.id = $2 AND {_SUBSCRIBED.format(org="o.organization_id", topic="$3")}
            RETURNING id""",
        new_id("evt"),
        operation_id,
        topic,
    )
    return str(value) if value is not None else None


class IntegrationConfig(TypedDict, total=False):
    """An integration's public settings (never a secret), as the API stores them: the fields of
    its `IntegrationConfigInput` schema that were given, with `webhookUrl` masked."""

    type: str
    webhookUrl: str
    addresses: list[str]
    channel: str
    workspaceId: str
    botTokenRef: str
    installedBy: list[str]
    enabled: bool


@dataclass(frozen=True)
class IntegrationRow:
    id: str
    organization_id: str
    channel: str
    """webhook, slack or email."""
    enabled: bool
    config: IntegrationConfig
    secret_ciphertext: bytes | None
    """Sealed (`clusterflow.vault`) JSON object of the channel's secrets; opened only to deliver."""
    created_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SubscriptionRow:
    id: str
    organization_id: str
    topic: str
    channels: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EventRow:
    """An outbox event."""

    id: str
    organization_id: str
    topic: str
    subject: str | None
    data: dict[str, Any]
    """Free-form: its shape is owned by whoever enqueues the event (`enqueue_for_operation`
    builds the operation's; other callers of `enqueue` pass their own)."""
    created_at: datetime
    dispatched_at: datetime | None


@dataclass(frozen=True)
class DeliveryTargetRow:
    """One (subscription, channel) pair an event goes to."""

    subscription_id: str
    channel: str


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery attempt in the log."""

    id: int
    event_id: str
    subscription_id: str
    organization_id: str
    topic: str
    channel: str
    attempt: int
    outcome: str
    """DELIVERED, RETRYING, FAILED or SKIPPED."""
    response_status: int | None
    error: str | None
    duration_ms: int
    attempted_at: datetime


_INTEGRATION_COLUMNS = (
    "id, organization_id, channel, enabled, config, secret_ciphertext, created_by, created_at, updated_at"
)
_SUBSCRIPTION_COLUMNS = "id, organization_id, topic, channels, enabled, created_at, updated_at"
_EVENT_COLUMNS = "id, organization_id, topic, subject, data, created_at, dispatched_at"
_DELIVERY_COLUMNS = """id, event_id, subscription_id, organization_id, topic, channel, attempt, outcome,
    response_status, error, duration_ms, attempted_at"""


def _integration_row(record: Record) -> IntegrationRow:
    return IntegrationRow(
        id=record["id"],
        organization_id=record["organization_id"],
        channel=record["channel"],
        enabled=record["enabled"],
        config=record["config"],
        secret_ciphertext=record["secret_ciphertext"],
        created_by=record["created_by"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


def _subscription_row(record: Record) -> SubscriptionRow:
    return SubscriptionRow(
        id=record["id"],
        organization_id=record["organization_id"],
        topic=record["topic"],
        channels=list(record["channels"]),
        enabled=record["enabled"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


def _event_row(record: Record) -> EventRow:
    return EventRow(
        id=record["id"],
        organization_id=record["organization_id"],
        topic=record["topic"],
        subject=record["subject"],
        data=record["data"],
        created_at=record["created_at"],
        dispatched_at=record["dispatched_at"],
    )


def _delivery_row(record: Record) -> DeliveryRow:
    return DeliveryRow(
        id=record["id"],
        event_id=record["event_id"],
        subscription_id=record["subscription_id"],
        organization_id=record["organization_id"],
        topic=record["topic"],
        channel=record["channel"],
        attempt=record["attempt"],
        outcome=record["outcome"],
        response_status=record["response_status"],
        error=record["error"],
        duration_ms=record["duration_ms"],
        attempted_at=record["attempted_at"],
    )


# --- integrations -----------------------------------------------------------------------------


async def save_integration(
    db: Executor,
    organization_id: str,
    channel: str,
    *,
    enabled: bool,
    config: dict[str, Any],
    secret_ciphertext: bytes | None,
    created_by: str | None,
) -> tuple[IntegrationRow, bool]:
    """Create or replace the channel's integration; (row, created).

    A `secret_ciphertext` of None keeps the stored one (a webhook keeps its signing secret).
    """
    row = await db.fetchrow(
        f"""INSERT INTO notification_integrations
                  (id, organization_id, channel, enabled, config, secret_ciphertext, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (organization_id, channel) DO UPDATE
              SET enabled = EXCLUDED.enabled, config = EXCLUDED.config, updated_at = now(),
                  secret_ciphertext = COALESCE(EXCLUDED.secret_ciphertext, notification_integrations.secret_ciphertext)
           RETURNING {_INTEGRATION_COLUMNS}, (xmax = 0) AS created""",
        new_id("nint"),
        organization_id,
        channel,
        enabled,
        config,
        secret_ciphertext,
        created_by,
    )
    assert row is not None
    return _integration_row(row), bool(row["created"])


async def get_integration(db: Executor, organization_id: str, channel: str) -> IntegrationRow | None:
    record = await db.fetchrow(
        f"SELECT {_INTEGRATION_COLUMNS} FROM notification_integrations WHERE organization_id = $1 AND channel = $2",
        organization_id,
        channel,
    )
    return _integration_row(record) if record is not None else None


async def list_integrations(db: Executor, organization_id: str) -> list[IntegrationRow]:
    rows = await db.fetch(
        f"SELECT {_INTEGRATION_COLUMNS} FROM notification_integrations WHERE organization_id = $1 ORDER BY channel",
        organization_id,
    )
    return [_integration_row(r) for r in rows]


async def delete_integration(db: Executor, organization_id: str, channel: str) -> bool:
    status = await db.execute(
        "DELETE FROM notification_integrations WHERE organization_id = $1 AND channel = $2", organization_id, channel
    )
    return bool(status != "DELETE 0")


# --- subscriptions ----------------------------------------------------------------------------


async def save_subscription(
    db: Executor, organization_id: str, topic: str, channels: list[str], enabled: bool
) -> SubscriptionRow:
    """Create or replace the topic's subscription (its ID, used by unsubscribe links, stays)."""
    row: Record | None = await db.fetchrow(
        f"""INSERT INTO notification_subscriptions (id, organization_id, topic, channels, enabled)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (organization_id, topic) DO UPDATE
              SET channels = EXCLUDED.channels, enabled = EXCLUDED.enabled, updated_at = now()
           RETURNING {_SUBSCRIPTION_COLUMNS}""",
        new_id("nsub"),
        organization_id,
        topic,
        channels,
        enabled,
    )
    assert row is not None
    return _subscription_row(row)


async def get_subscription(db: Executor, organization_id: str, topic: str) -> SubscriptionRow | None:
    record = await db.fetchrow(
        f"SELECT {_SUBSCRIPTION_COLUMNS} FROM notification_subscriptions WHERE organization_id = $1 AND topic = $2",
        organization_id,
        topic,
    )
    return _subscription_row(record) if record is not None else None


async def subscription_by_id(db: Executor, subscription_id: str) -> SubscriptionRow | None:
    record = await db.fetchrow(
        f"SELECT {_SUBSCRIPTION_COLUMNS} FROM notification_subscriptions WHERE id = $1", subscription_id
    )
    return _subscription_row(record) if record is not None else None


async def list_subscriptions(db: Executor, organization_id: str) -> list[SubscriptionRow]:
    rows = await db.fetch(
        f"SELECT {_SUBSCRIPTION_COLUMNS} FROM notification_subscriptions WHERE organization_id = $1 ORDER BY topic",
        organization_id,
    )
    return [_subscription_row(r) for r in rows]


async def delete_subscription(db: Executor, organization_id: str, topic: str) -> bool:
    status = await db.execute(
        "DELETE FROM notification_subscriptions WHERE organization_id = $1 AND topic = $2", organization_id, topic
    )
    return bool(status != "DELETE 0")


async def unsubscribe(db: Executor, subscription_id: str, channel: str | None) -> SubscriptionRow | None:
    """Drop one channel from the subscription, or disable it (no channel, or none left)."""
    row: Record | None = await db.fetchrow(
        f"""UPDATE notification_subscriptions
              SET channels = CASE WHEN $2::text IS NULL THEN channels ELSE array_remove(channels, $2) END,
                  enabled = enabled AND $2::text IS NOT NULL AND cardinality(array_remove(channels, $2)) > 0,
                  updated_at = now()
            WHERE id = $1
           RETURNING {_SUBSCRIPTION_COLUMNS}""",
        subscription_id,
        channel,
    )
    return _subscription_row(row) if row is not None else None


# --- dispatch and delivery --------------------------------------------------------------------


async def claim_pending(conn: Conn, limit: int = 100) -> list[str]:
    """IDs of undispatched events, oldest first, locked (SKIP LOCKED) so dispatchers split the work.
    Call inside a transaction and `mark_dispatched` before it commits."""
    rows = await conn.fetch(
        """SELECT id FROM notification_outbox WHERE dispatched_at IS NULL
            ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [r["id"] for r in rows]


async def mark_dispatched(db: Executor, event_ids: list[str]) -> None:
    await db.execute("UPDATE notification_outbox SET dispatched_at = now() WHERE id = ANY($1::text[])", event_ids)


async def event(db: Executor, event_id: str) -> EventRow | None:
    record = await db.fetchrow(f"SELECT {_EVENT_COLUMNS} FROM notification_outbox WHERE id = $1", event_id)
    return _event_row(record) if record is not None else None


async def targets(db: Executor, event_id: str) -> list[DeliveryTargetRow]:
    """(subscription, channel) pairs the event goes to: enabled subscription, enabled integration."""
    rows = await db.fetch(
        """SELECT s.id AS subscription_id, ch AS channel
             FROM notification_outbox e
             JOIN notification_subscriptions s ON s.organization_id = e.organization_id AND s.topic = e.topic
             CROSS JOIN LATERAL unnest(s.channels) AS ch
             JOIN notification_integrations i ON i.organization_id = e.organization_id AND i.channel = ch
            WHERE e.id = $1 AND s.enabled AND i.enabled
            ORDER BY ch""",
        event_id,
    )
    return [DeliveryTargetRow(r["subscription_id"], r["channel"]) for r in rows]


async def log_attempt(
    db: Executor,
    *,
    event_id: str,
    subscription_id: str,
    organization_id: str,
    topic: str,
    channel: str,
    attempt: int,
    outcome: str,
    response_status: int | None,
    error: str | None,
    duration_ms: int,
) -> None:
    await db.execute(
        """INSERT INTO notification_deliveries (event_id, subscription_id, organization_id, topic, channel,
                  attempt, outcome, response_status, error, duration_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        event_id,
        subscription_id,
        organization_id,
        topic,
        channel,
        attempt,
        outcome,
        response_status,
        error,
        duration_ms,
    )


async def deliveries(db: Executor, subscription_id: str, limit: int = 100) -> list[DeliveryRow]:
    """The subscription's latest delivery attempts, newest first."""
    rows = await db.fetch(
        f"""SELECT {_DELIVERY_COLUMNS} FROM notification_deliveries
             WHERE subscription_id = $1 ORDER BY id DESC LIMIT $2""",
        subscription_id,
        limit,
    )
    return [_delivery_row(r) for r in rows]


async def prune(db: Executor, older_than_days: int, limit: int = 1000) -> int:
    """Delete dispatched events (and their delivery log) older than the retention period."""
    status = await db.execute(
        """DELETE FROM notification_outbox WHERE id IN (
               SELECT id FROM notification_outbox
                WHERE dispatched_at IS NOT NULL AND created_at < now() - make_interval(days => $1)
                LIMIT $2)""",
        older_than_days,
        limit,
    )
    return int(status.split()[-1])
