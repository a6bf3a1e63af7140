"""Federated cloud accounts (GCP and Azure cloud connect), one row per CLOUD_CONNECT operation.

A connected account stays usable while DEGRADED (re-verification found its federation broken):
as for AWS, the next operation says what fails, and the account turns CONNECTED again by itself
once the customer repairs it. Each re-verification transition announces itself
(`cloud_account.disconnected`) in the transaction that records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clusterflow.contracts.notifications import Topic
from clusterflow.records import notifications
from clusterflow.records.db import DbPool, Executor, Record

CONNECTED, DEGRADED = "CONNECTED", "DEGRADED"
USABLE = (CONNECTED, DEGRADED)

_FIELDS = (
    "id",
    "organization_id",
    "provider",
    "cluster_name",
    "level",
    "status",
    "params",
    "identity",
    "script",
    "error",
    "created_at",
    "updated_at",
    "connected_at",
    "error_step",
    "remedy",
    "last_checked_at",
)
_COLUMNS = ", ".join(_FIELDS)


@dataclass(frozen=True)
class FederatedAccountRow:
    """One GCP or Azure connection attempt (`_COLUMNS`)."""

    id: str
    """The CLOUD_CONNECT operation's ID."""
    organization_id: str
    provider: str
    cluster_name: str
    level: str
    status: str
    params: dict[str, Any]
    """What the caller asked for (project, region, subscription, resource group...): the connect
    request's provider-specific fields, owned by the API's request schemas."""
    identity: dict[str, Any]
    """Who we act as once connected (service account, pool and provider; tenant and client ID),
    as the providers' federation modules and the setup script write it."""
    script: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    connected_at: datetime | None
    error_step: str | None = None
    """Re-verification: the step that failed (token exchange, impersonation, subscription read)."""
    remedy: str | None = None
    last_checked_at: datetime | None = None


def _row(record: Record | None) -> FederatedAccountRow | None:
    if record is None:
        return None
    return FederatedAccountRow(
        id=record["id"],
        organization_id=record["organization_id"],
        provider=record["provider"],
        cluster_name=record["cluster_name"],
        level=record["level"],
        status=record["status"],
        params=record["params"],
        identity=record["identity"] or {},
        script=record["script"],
        error=record["error"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        connected_at=record["connected_at"],
        error_step=record["error_step"],
        remedy=record["remedy"],
        last_checked_at=record["last_checked_at"],
    )


async def insert(
    db: Executor,
    *,
    account_id: str,
    organization_id: str,
    provider: str,
    cluster_name: str,
    level: str,
    status: str,
    params: dict[str, Any],
    identity: dict[str, Any],
    script: str,
) -> None:
    """Record a new connection attempt (in the same transaction as its operation)."""
    await db.execute(
        """INSERT INTO federated_cloud_accounts
               (id, organization_id, provider, cluster_name, level, status, params, identity, script)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        account_id,
        organization_id,
        provider,
        cluster_name,
        level,
        status,
        params,
        identity,
        script,
    )


async def get(db: Executor, organization_id: str, provider: str, account_id: str) -> FederatedAccountRow | None:
    """One account of an organization (another organization's is None)."""
    return _row(
        await db.fetchrow(
            f"SELECT {_COLUMNS} FROM federated_cloud_accounts WHERE organization_id = $1 AND provider = $2 AND id = $3",
            organization_id,
            provider,
            account_id,
        )
    )


async def get_by_id(db: Executor, account_id: str) -> FederatedAccountRow | None:
    """One account by ID alone: for workers and the setup script's callback."""
    return _row(await db.fetchrow(f"SELECT {_COLUMNS} FROM federated_cloud_accounts WHERE id = $1", account_id))


async def latest_connected(
    db: Executor, organization_id: str, provider: str, cluster_name: str, statuses: tuple[str, ...] = USABLE
) -> FederatedAccountRow | None:
    """The newest usable (CONNECTED or DEGRADED; or of `statuses`) account for a cluster name."""
    return _row(
        await db.fetchrow(
            f"""SELECT {_COLUMNS} FROM federated_cloud_accounts
             WHERE organization_id = $1 AND provider = $2 AND cluster_name = $3 AND status = ANY($4::text[])
             ORDER BY created_at DESC LIMIT 1""",
            organization_id,
            provider,
            cluster_name,
            list(statuses),
        )
    )


async def merge_identity(db: Executor, account_id: str, identity: dict[str, Any]) -> bool:
    """Add what the setup script reported; false once the account is no longer waiting."""
    updated = await db.fetchval(
        """UPDATE federated_cloud_accounts SET identity = identity || $2, updated_at = now()
            WHERE id = $1 AND status IN ('PENDING', 'WAITING_FOR_SETUP') RETURNING true""",
        account_id,
        identity,
    )
    return bool(updated)


async def set_status(db: Executor, account_id: str, status: str, error: str | None = None) -> None:
    """Move the account on; CONNECTED stamps `connected_at`."""
    await db.execute(
        """UPDATE federated_cloud_accounts
              SET status = $2, error = $3, updated_at = now(), error_step = NULL, remedy = NULL,
                  connected_at = CASE WHEN $2 = 'CONNECTED' THEN now() ELSE connected_at END
            WHERE id = $1""",
        account_id,
        status,
        error,
    )


async def connected_for_cluster(db: Executor, cluster_id: str, provider: str) -> FederatedAccountRow | None:
    """The newest usable account of the cluster's organization for the cluster's name."""
    columns = ", ".join(f"a.{f}" for f in _FIELDS)
    return _row(
        await db.fetchrow(
            f"""SELECT {columns}
             FROM federated_cloud_accounts a
             JOIN clusters c ON c.organization_id = a.organization_id AND c.name = a.cluster_name
            WHERE c.id = $1 AND a.provider = $2 AND a.status = ANY($3::text[])
            ORDER BY a.created_at DESC LIMIT 1""",
            cluster_id,
            provider,
            list(USABLE),
        )
    )


async def list_for_reverify(db: Executor, limit: int = 1000) -> list[FederatedAccountRow]:
    """The account each (organization, cloud, cluster name) uses now: its newest usable one.
    Older connections a reconnect superseded are not checked (their federation may be gone)."""
    records = await db.fetch(
        f"""SELECT * FROM (
              SELECT DISTINCT ON (organization_id, provider, cluster_name) {_COLUMNS}
                FROM federated_cloud_accounts WHERE status = ANY($1::text[])
               ORDER BY organization_id, provider, cluster_name, created_at DESC) latest
            ORDER BY last_checked_at NULLS FIRST LIMIT $2""",
        list(USABLE),
        limit,
    )
    return [r for r in (_row(record) for record in records) if r is not None]


async def record_reverify(
    pool: DbPool,
    row: FederatedAccountRow,
    *,
    healthy: bool,
    step: str | None = None,
    message: str | None = None,
    remedy: str | None = None,
) -> str | None:
    """Store one re-verification; on a transition (CONNECTED <-> DEGRADED) queue a
    `cloud_account.disconnected` event in the same transaction and return the new status."""
    status = CONNECTED if healthy else DEGRADED
    async with pool.acquire() as conn, conn.transaction():
        previous = await conn.fetchval(
            "SELECT status FROM federated_cloud_accounts WHERE id = $1 AND status = ANY($2::text[]) FOR UPDATE",
            row.id,
            list(USABLE),
        )
        if previous is None:  # settled otherwise meanwhile
            return None
        await conn.execute(
            """UPDATE federated_cloud_accounts
                  SET status = $2, error = $3, error_step = $4, remedy = $5, last_checked_at = now(),
                      updated_at = CASE WHEN status = $2 THEN updated_at ELSE now() END
                WHERE id = $1""",
            row.id,
            status,
            None if healthy else message,
            None if healthy else step,
            None if healthy else remedy,
        )
        if previous == status:
            return None
        await notifications.enqueue(
            conn,
            row.organization_id,
            Topic.CLOUD_ACCOUNT_DISCONNECTED,
            row.id,
            {
                "cloudAccountId": row.id,
                "provider": row.provider,
                "clusterName": row.cluster_name,
                "status": status,
                "previousStatus": previous,
                "step": None if healthy else step,
                "message": None if healthy else message,
                "remedy": None if healthy else remedy,
            },
        )
        return status
