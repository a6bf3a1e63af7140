"""Agent registrations of registered clusters: tokens, credentials, connection health.

Secrets are stored only as SHA-256 digests: the one-time registration token and the agent
credential are 256-bit random strings, so a slow hash adds nothing, and a digest lets the API
find the registration from the presented secret with one indexed lookup.

Connection status changes (CONNECTED, DISCONNECTED) each append a row to
`agent_connection_events`, in the same transaction as the change.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from clusterflow.records import clusters
from clusterflow.records.db import Conn, Executor, Record

REGISTERED_PROVIDER = "registered"
"""`clusters.provider` of a cluster brought under management by the agent."""
AGENT_PROVISIONER = "agent"
"""`clusters.provisioner_type` of a registered cluster."""

UNKNOWN_REGION = "unknown"
"""`clusters.region` of a registered cluster until its agent reports one."""

REGISTRATION_TOKEN_PREFIX = "cfreg_"  # noqa: S105 - a prefix, not a secret
AGENT_CREDENTIAL_PREFIX = "cfag_"


class ConnectionStatus(StrEnum):
    NEVER_CONNECTED = "NEVER_CONNECTED"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"


def is_registered(cluster_row: clusters.ClusterRow) -> bool:
    """True for a cluster brought in by registration: it must be unregistered, never deleted."""
    return cluster_row.provider == REGISTERED_PROVIDER


def hash_secret(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def new_registration_token() -> str:
    return REGISTRATION_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_agent_credential() -> str:
    return AGENT_CREDENTIAL_PREFIX + secrets.token_urlsafe(32)


async def insert(
    conn: Conn,
    *,
    cluster_id: str,
    organization_id: str,
    architecture: str,
    operation_id: str,
    token_hash: bytes,
    token_expires_at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO agent_registrations (cluster_id, organization_id, architecture, register_operation_id,
               token_hash, token_expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        cluster_id,
        organization_id,
        architecture,
        operation_id,
        token_hash,
        token_expires_at,
    )


async def reissue(
    conn: Conn,
    *,
    cluster_id: str,
    architecture: str,
    operation_id: str,
    token_hash: bytes,
    token_expires_at: datetime,
) -> None:
    """A fresh registration of a cluster whose agent never completed one: a new token, and
    whatever credential the old one produced is revoked."""
    await conn.execute(
        """UPDATE agent_registrations
              SET architecture = $2, register_operation_id = $3, token_hash = $4, token_expires_at = $5,
                  token_used_at = NULL, credential_hash = NULL, pending_credential_hash = NULL,
                  rotation_requested_at = NULL, uninstall_requested_at = NULL, agent_removed_at = NULL,
                  revoked_at = NULL, connection_status = 'NEVER_CONNECTED', connection_id = NULL,
                  updated_at = now()
            WHERE cluster_id = $1""",
        cluster_id,
        architecture,
        operation_id,
        token_hash,
        token_expires_at,
    )


@dataclass(frozen=True)
class RegistrationRow:
    """A registered cluster's agent registration: its token, credential and connection state.

    The token and credential digests stay in this module; what is read out is their timeline."""

    cluster_id: str
    organization_id: str
    architecture: str
    register_operation_id: str | None
    token_expires_at: datetime
    token_used_at: datetime | None
    has_credential: bool
    """Whether a credential was issued and is live (its digest is never read out)."""
    has_pending_credential: bool
    """Whether a rotated credential waits for the agent to confirm it stored it."""
    credential_issued_at: datetime | None
    rotation_requested_at: datetime | None
    connection_status: str
    connection_id: str | None
    connected_at: datetime | None
    last_heartbeat_at: datetime | None
    agent_info: dict[str, Any]
    """What the agent last reported about itself (`contracts.agent`'s hello/heartbeat fields)."""
    uninstall_requested_at: datetime | None
    agent_removed_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    updated_at: datetime


def _registration(record: Record) -> RegistrationRow:
    return RegistrationRow(
        cluster_id=record["cluster_id"],
        organization_id=record["organization_id"],
        architecture=record["architecture"],
        register_operation_id=record["register_operation_id"],
        token_expires_at=record["token_expires_at"],
        token_used_at=record["token_used_at"],
        has_credential=record["credential_hash"] is not None,
        has_pending_credential=record["pending_credential_hash"] is not None,
        credential_issued_at=record["credential_issued_at"],
        rotation_requested_at=record["rotation_requested_at"],
        connection_status=record["connection_status"],
        connection_id=record["connection_id"],
        connected_at=record["connected_at"],
        last_heartbeat_at=record["last_heartbeat_at"],
        agent_info=record["agent_info"] or {},
        uninstall_requested_at=record["uninstall_requested_at"],
        agent_removed_at=record["agent_removed_at"],
        revoked_at=record["revoked_at"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


async def get(db: Executor, cluster_id: str) -> RegistrationRow | None:
    record = await db.fetchrow("SELECT * FROM agent_registrations WHERE cluster_id = $1", cluster_id)
    return _registration(record) if record is not None else None


async def find_live_cluster_by_name(db: Executor, organization_id: str, name: str) -> str | None:
    """ID of the organization's live (not deleted) cluster with this name."""
    return await clusters.live_id_by_name(db, organization_id, name)


# A token is only good while its registration operation runs: once that timed out (FAILED),
# the cluster must be registered again, whatever the token's own expiry says.
_REGISTRATION_IN_FLIGHT = """EXISTS (SELECT 1 FROM operations o WHERE o.id = r.register_operation_id
    AND o.status IN ('PENDING', 'AWAITING_APPROVAL', 'RUNNING', 'CANCELLING'))"""


class TokenRefusal(StrEnum):
    INVALID = "REGISTRATION_TOKEN_INVALID"
    USED = "REGISTRATION_TOKEN_USED"
    EXPIRED = "REGISTRATION_TOKEN_EXPIRED"
    REVOKED = "AGENT_REVOKED"


@dataclass
class Exchange:
    cluster_id: str | None
    refusal: TokenRefusal | None


async def exchange_token(conn: Conn, token: str, credential_hash: bytes) -> Exchange:
    """Spend the one-time token: on success the credential (by hash) becomes the agent's."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"""SELECT cluster_id, token_hash, token_used_at, revoked_at,
                       token_expires_at < now() OR NOT {_REGISTRATION_IN_FLIGHT} AS expired
                  FROM agent_registrations r WHERE token_hash = $1 FOR UPDATE""",
            hash_secret(token),
        )
        if row is None or not hmac.compare_digest(bytes(row["token_hash"]), hash_secret(token)):
            return Exchange(None, TokenRefusal.INVALID)
        if row["revoked_at"] is not None:
            return Exchange(row["cluster_id"], TokenRefusal.REVOKED)
        if row["token_used_at"] is not None:
            return Exchange(row["cluster_id"], TokenRefusal.USED)
        if row["expired"]:
            return Exchange(row["cluster_id"], TokenRefusal.EXPIRED)
        await conn.execute(
            """UPDATE agent_registrations SET token_used_at = now(), credential_hash = $2,
                      credential_issued_at = now(), updated_at = now()
                WHERE cluster_id = $1""",
            row["cluster_id"],
            credential_hash,
        )
        return Exchange(row["cluster_id"], None)


async def authenticate_credential(conn: Conn, credential: str) -> str | None:
    """The cluster ID a live agent credential belongs to. Presenting the pending credential of
    a rotation completes the rotation (the agent stored it; the old one is now revoked)."""
    digest = hash_secret(credential)
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT cluster_id, credential_hash = $1 AS current FROM agent_registrations
                WHERE (credential_hash = $1 OR pending_credential_hash = $1) AND revoked_at IS NULL
                FOR UPDATE""",
            digest,
        )
        if row is None:
            return None
        if not row["current"]:
            await promote_pending_credential(conn, row["cluster_id"])
        return str(row["cluster_id"])


async def set_pending_credential(db: Executor, cluster_id: str, credential_hash: bytes) -> None:
    await db.execute(
        "UPDATE agent_registrations SET pending_credential_hash = $2, updated_at = now() WHERE cluster_id = $1",
        cluster_id,
        credential_hash,
    )


async def promote_pending_credential(db: Executor, cluster_id: str) -> bool:
    """The agent stored the rotated credential: it replaces the old one, which stops working."""
    changed = await db.fetchval(
        """UPDATE agent_registrations
              SET credential_hash = pending_credential_hash, pending_credential_hash = NULL,
                  credential_issued_at = now(), rotation_requested_at = NULL, updated_at = now()
            WHERE cluster_id = $1 AND pending_credential_hash IS NOT NULL
            RETURNING true""",
        cluster_id,
    )
    return bool(changed)


async def _event(conn: Conn, cluster_id: str, status: str, message: str) -> None:
    await conn.execute(
        "INSERT INTO agent_connection_events (cluster_id, status, message) VALUES ($1, $2, $3)",
        cluster_id,
        status,
        message,
    )


async def mark_connected(conn: Conn, cluster_id: str, connection_id: str, agent_info: dict[str, Any]) -> str:
    """Record a (re)connection with the agent's report; return the status before it."""
    async with conn.transaction():
        previous = await conn.fetchval(
            "SELECT connection_status FROM agent_registrations WHERE cluster_id = $1 FOR UPDATE", cluster_id
        )
        await conn.execute(
            """UPDATE agent_registrations
                  SET connection_status = 'CONNECTED', connection_id = $2, connected_at = now(),
                      last_heartbeat_at = now(), agent_info = $3, updated_at = now()
                WHERE cluster_id = $1""",
            cluster_id,
            connection_id,
            agent_info,
        )
        if agent_info.get("region"):
            # Registration may omit the region; the agent reads it from the nodes' labels.
            await conn.execute(
                "UPDATE clusters SET region = $2, updated_at = now() WHERE id = $1 AND region = $3",
                cluster_id,
                agent_info["region"],
                UNKNOWN_REGION,
            )
        if previous != ConnectionStatus.CONNECTED:
            verb = "connected" if previous == ConnectionStatus.NEVER_CONNECTED else "reconnected"
            await _event(conn, cluster_id, ConnectionStatus.CONNECTED, f"agent {verb}")
        return str(previous)


async def heartbeat(conn: Conn, cluster_id: str, connection_id: str, agent_info: dict[str, Any] | None) -> bool:
    """Record a heartbeat; true if it restored a DISCONNECTED agent to CONNECTED."""
    async with conn.transaction():
        previous = await conn.fetchval(
            "SELECT connection_status FROM agent_registrations WHERE cluster_id = $1 FOR UPDATE", cluster_id
        )
        await conn.execute(
            """UPDATE agent_registrations
                  SET connection_status = 'CONNECTED', connection_id = $2, last_heartbeat_at = now(),
                      agent_info = COALESCE($3, agent_info), updated_at = now()
                WHERE cluster_id = $1""",
            cluster_id,
            connection_id,
            agent_info,
        )
        if previous != ConnectionStatus.CONNECTED:
            await _event(conn, cluster_id, ConnectionStatus.CONNECTED, "agent heartbeats resumed")
            return True
        return False


async def mark_disconnected(conn: Conn, cluster_id: str, connection_id: str, message: str) -> bool:
    """The socket `connection_id` closed: DISCONNECTED, unless the agent already reconnected."""
    async with conn.transaction():
        changed = await conn.fetchval(
            """UPDATE agent_registrations SET connection_status = 'DISCONNECTED', updated_at = now()
                WHERE cluster_id = $1 AND connection_id = $2 AND connection_status = 'CONNECTED'
                RETURNING true""",
            cluster_id,
            connection_id,
        )
        if changed:
            await _event(conn, cluster_id, ConnectionStatus.DISCONNECTED, message)
        return bool(changed)


async def expire_silent_agents(db: Executor, window_seconds: float) -> list[str]:
    """Mark DISCONNECTED every CONNECTED agent silent for longer than the window (one
    statement, so monitors on several workers never double the event)."""
    rows = await db.fetch(
        """WITH changed AS (
               UPDATE agent_registrations SET connection_status = 'DISCONNECTED', updated_at = now()
                WHERE connection_status = 'CONNECTED'
                  AND last_heartbeat_at < now() - make_interval(secs => $1)
                RETURNING cluster_id, last_heartbeat_at)
           INSERT INTO agent_connection_events (cluster_id, status, message)
           SELECT cluster_id, 'DISCONNECTED',
                  'no heartbeat for more than ' || $1::text || 's (last at '
                  || to_char(last_heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ')'
             FROM changed
           RETURNING cluster_id""",
        window_seconds,
    )
    return [str(r["cluster_id"]) for r in rows]


@dataclass(frozen=True)
class ConnectionEventRow:
    """One change of an agent's connection (`agent_connection_events`)."""

    id: int
    cluster_id: str
    timestamp: datetime
    status: str
    message: str


async def connection_events(db: Executor, cluster_id: str, limit: int = 20) -> list[ConnectionEventRow]:
    """The latest connection changes, oldest first."""
    rows = await db.fetch(
        """SELECT * FROM (SELECT * FROM agent_connection_events WHERE cluster_id = $1
             ORDER BY id DESC LIMIT $2) AS recent ORDER BY id""",
        cluster_id,
        limit,
    )
    return [ConnectionEventRow(r["id"], r["cluster_id"], r["timestamp"], r["status"], r["message"]) for r in rows]


async def request_rotation(db: Executor, cluster_id: str) -> None:
    await db.execute(
        """UPDATE agent_registrations SET rotation_requested_at = COALESCE(rotation_requested_at, now()),
                  updated_at = now()
            WHERE cluster_id = $1""",
        cluster_id,
    )


async def request_uninstall(db: Executor, cluster_id: str) -> None:
    await db.execute(
        """UPDATE agent_registrations SET uninstall_requested_at = COALESCE(uninstall_requested_at, now()),
                  updated_at = now()
            WHERE cluster_id = $1""",
        cluster_id,
    )


async def withdraw_uninstall(db: Executor, cluster_id: str) -> None:
    """A cancelled unregistration: the agent, if it has not removed itself yet, stays."""
    await db.execute(
        """UPDATE agent_registrations SET uninstall_requested_at = NULL, updated_at = now()
            WHERE cluster_id = $1 AND agent_removed_at IS NULL""",
        cluster_id,
    )


async def mark_agent_removed(db: Executor, cluster_id: str) -> None:
    await db.execute(
        """UPDATE agent_registrations SET agent_removed_at = COALESCE(agent_removed_at, now()), updated_at = now()
            WHERE cluster_id = $1""",
        cluster_id,
    )


async def revoke(conn: Conn, cluster_id: str, message: str) -> bool:
    """Revoke the agent: its credential and any unspent token stop working at once."""
    async with conn.transaction():
        changed = await conn.fetchval(
            """UPDATE agent_registrations
                  SET revoked_at = now(), credential_hash = NULL, pending_credential_hash = NULL,
                      token_expires_at = LEAST(token_expires_at, now()),
                      connection_status = CASE WHEN connection_status = 'CONNECTED' THEN 'DISCONNECTED'
                                               ELSE connection_status END,
                      updated_at = now()
                WHERE cluster_id = $1 AND revoked_at IS NULL
                RETURNING true""",
            cluster_id,
        )
        if changed:
            await _event(conn, cluster_id, "REVOKED", message)
        return bool(changed)
