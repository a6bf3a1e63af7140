"""Notification integrations, subscriptions, the outbox and the delivery log.

`enqueue` and `enqueue_for_operation` are called inside the transaction of the change they
announce; they write nothing when the organization has no enabled subscription to the topic,
so organizations that never subscribed pay one indexed lookup per status change.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from clusterflow.ids import new_id
from clusterflow.records.db import Conn, Executor

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
) -> tuple[asyncpg.Record, bool]:
    """Create or replace the channel's integration; (row, created).

    A `secret_ciphertext` of None keeps the stored one (a webhook keeps its signing secret).
    """
    row = await db.fetchrow(
        """INSERT INTO notification_integrations
                  (id, organization_id, channel, enabled, config, secret_ciphertext, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (organization_id, channel) DO UPDATE
              SET enabled = EXCLUDED.enabled, config = EXCLUDED.config, updated_at = now(),
                  secret_ciphertext = COALESCE(EXCLUDED.secret_ciphertext, notification_integrations.secret_ciphertext)
           RETURNING *, (xmax = 0) AS created""",
        new_id("nint"),
        organization_id,
        channel,
        enabled,
        config,
        secret_ciphertext,
        created_by,
    )
    assert row is not None
    return row, bool(row["created"])


async def get_integration(db: Executor, organization_id: str, channel: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT * FROM notification_integrations WHERE organization_id = $1 AND channel = $2",
        organization_id,
        channel,
    )


async def list_integrations(db: Executor, organization_id: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT * FROM notification_integrations WHERE organization_id = $1 ORDER BY channel", organization_id
        )
    )


async def delete_integration(db: Executor, organization_id: str, channel: str) -> bool:
    status = await db.execute(
        "DELETE FROM notification_integrations WHERE organization_id = $1 AND channel = $2", organization_id, channel
    )
    return bool(status != "DELETE 0")


# --- subscriptions ----------------------------------------------------------------------------


async def save_subscription(
    db: Executor, organization_id: str, topic: str, channels: list[str], enabled: bool
) -> asyncpg.Record:
    """Create or replace the topic's subscription (its ID, used by unsubscribe links, stays)."""
    row: asyncpg.Record | None = await db.fetchrow(
        """INSERT INTO notification_subscriptions (id, organization_id, topic, channels, enabled)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (organization_id, topic) DO UPDATE
              SET channels = EXCLUDED.channels, enabled = EXCLUDED.enabled, updated_at = now()
           RETURNING *""",
        new_id("nsub"),
        organization_id,
        topic,
        channels,
        enabled,
    )
    assert row is not None
    return row


async def get_subscription(db: Executor, organization_id: str, topic: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT * FROM notification_subscriptions WHERE organization_id = $1 AND topic = $2", organization_id, topic
    )


async def subscription_by_id(db: Executor, subscription_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM notification_subscriptions WHERE id = $1", subscription_id)


async def list_subscriptions(db: Executor, organization_id: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT * FROM notification_subscriptions WHERE organization_id = $1 ORDER BY topic", organization_id
        )
    )


async def delete_subscription(db: Executor, organization_id: str, topic: str) -> bool:
    status = await db.execute(
        "DELETE FROM notification_subscriptions WHERE organization_id = $1 AND topic = $2", organization_id, topic
    )
    return bool(status != "DELETE 0")


async def unsubscribe(db: Executor, subscription_id: str, channel: str | None) -> asyncpg.Record | None:
    """Drop one channel from the subscription, or disable it (no channel, or none left)."""
    row: asyncpg.Record | None = await db.fetchrow(
        """UPDATE notification_subscriptions
              SET channels = CASE WHEN $2::text IS NULL THEN channels ELSE array_remove(channels, $2) END,
                  enabled = enabled AND $2::text IS NOT NULL AND cardinality(array_remove(channels, $2)) > 0,
                  updated_at = now()
            WHERE id = $1
           RETURNING *""",
        subscription_id,
        channel,
    )
    return row


# --- dispatch and delivery --------------------------------------------------------------------


async def claim_pending(conn: Conn, limit: int = 100) -> list[asyncpg.Record]:
    """Undispatched events, oldest first, locked (SKIP LOCKED) so dispatchers split the work.
    Call inside a transaction and `mark_dispatched` before it commits."""
    rows = await conn.fetch(
        """SELECT id FROM notification_outbox WHERE dispatched_at IS NULL
            ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return list(rows)


async def mark_dispatched(db: Executor, event_ids: list[str]) -> None:
    await db.execute("UPDATE notification_outbox SET dispatched_at = now() WHERE id = ANY($1::text[])", event_ids)


async def event(db: Executor, event_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM notification_outbox WHERE id = $1", event_id)


async def targets(db: Executor, event_id: str) -> list[asyncpg.Record]:
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
    return list(rows)


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


async def deliveries(db: Executor, subscription_id: str, limit: int = 100) -> list[asyncpg.Record]:
    """The subscription's latest delivery attempts, newest first."""
    return list(
        await db.fetch(
            "SELECT * FROM notification_deliveries WHERE subscription_id = $1 ORDER BY id DESC LIMIT $2",
            subscription_id,
            limit,
        )
    )


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
