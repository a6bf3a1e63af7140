"""Federated cloud accounts (GCP and Azure cloud connect), one row per CLOUD_CONNECT operation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clusterflow.records.db import Executor, Record

_COLUMNS = (
    "id, organization_id, provider, cluster_name, level, status, params, identity, script, error, "
    "created_at, updated_at, connected_at"
)


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
    db: Executor, organization_id: str, provider: str, cluster_name: str
) -> FederatedAccountRow | None:
    """The newest CONNECTED account for a cluster name."""
    return _row(
        await db.fetchrow(
            f"""SELECT {_COLUMNS} FROM federated_cloud_accounts
             WHERE organization_id = $1 AND provider = $2 AND cluster_name = $3 AND status = 'CONNECTED'
             ORDER BY created_at DESC LIMIT 1""",
            organization_id,
            provider,
            cluster_name,
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
              SET status = $2, error = $3, updated_at = now(),
                  connected_at = CASE WHEN $2 = 'CONNECTED' THEN now() ELSE connected_at END
            WHERE id = $1""",
        account_id,
        status,
        error,
    )


async def connected_for_cluster(db: Executor, cluster_id: str, provider: str) -> FederatedAccountRow | None:
    """The newest CONNECTED account of the cluster's organization for the cluster's name."""
    return _row(
        await db.fetchrow(
            """SELECT a.id, a.organization_id, a.provider, a.cluster_name, a.level, a.status, a.params, a.identity,
                  a.script, a.error, a.created_at, a.updated_at, a.connected_at
             FROM federated_cloud_accounts a
             JOIN clusters c ON c.organization_id = a.organization_id AND c.name = a.cluster_name
            WHERE c.id = $1 AND a.provider = $2 AND a.status = 'CONNECTED'
            ORDER BY a.created_at DESC LIMIT 1""",
            cluster_id,
            provider,
        )
    )
