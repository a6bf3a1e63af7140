"""Encrypted rows: generated kubeconfigs and the self-hosted credentials vault.

Repositories take and return ciphertext only (key ID, nonce, ciphertext); sealing and opening
happen in the caller with `clusterflow.vault.Sealer`, so plaintext never reaches SQL text,
parameters logged by the driver, or this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from clusterflow.records.db import Conn, Executor, Record


class CredentialsExist(Exception):
    def __init__(self, cluster_name: str) -> None:
        super().__init__(f"credentials for {cluster_name!r} are already stored")
        self.cluster_name = cluster_name


# --- kubeconfigs ---------------------------------------------------------------------------

_KUBECONFIG_COLUMNS = """operation_id, organization_id, cluster_id, status, duration_seconds, key_id, nonce, ciphertext,
    error, expires_at, created_at, ready_at"""


@dataclass(frozen=True)
class PendingKubeconfig:
    """A kubeconfig request the cluster's agent has yet to answer."""

    operation_id: str
    duration_seconds: int


@dataclass(frozen=True)
class KubeconfigRow:
    """A kubeconfig request and, once READY, its sealed config (`_KUBECONFIG_COLUMNS`)."""

    operation_id: str
    organization_id: str
    cluster_id: str
    status: str
    """PENDING, READY or FAILED."""
    duration_seconds: int
    key_id: str | None
    nonce: bytes | None
    ciphertext: bytes | None
    error: str | None
    expires_at: datetime | None
    created_at: datetime
    ready_at: datetime | None
    expired: bool | None = None
    """Whether `expires_at` has passed (read by `latest_kubeconfig` only)."""


def _kubeconfig_row(record: Record, expired: bool = False) -> KubeconfigRow:
    return KubeconfigRow(
        operation_id=record["operation_id"],
        organization_id=record["organization_id"],
        cluster_id=record["cluster_id"],
        status=record["status"],
        duration_seconds=record["duration_seconds"],
        key_id=record["key_id"],
        nonce=record["nonce"],
        ciphertext=record["ciphertext"],
        error=record["error"],
        expires_at=record["expires_at"],
        created_at=record["created_at"],
        ready_at=record["ready_at"],
        expired=record["expired"] if expired else None,
    )


@dataclass(frozen=True)
class CredentialsStatusRow:
    """Everything about a cluster's stored credentials except the sealed values."""

    cluster_name: str
    provider: str
    account_id: str
    region: str
    bucket_name: str
    key_id: str
    status: str
    last_validated: datetime | None
    created_at: datetime
    updated_at: datetime


async def insert_kubeconfig_request(
    conn: Conn, *, operation_id: str, organization_id: str, cluster_id: str, duration_seconds: int
) -> None:
    await conn.execute(
        """INSERT INTO kubeconfigs (operation_id, organization_id, cluster_id, status, duration_seconds)
           VALUES ($1, $2, $3, 'PENDING', $4)""",
        operation_id,
        organization_id,
        cluster_id,
        duration_seconds,
    )


async def pending_kubeconfigs(db: Executor, cluster_id: str) -> list[PendingKubeconfig]:
    rows = await db.fetch(
        """SELECT operation_id, duration_seconds FROM kubeconfigs
            WHERE cluster_id = $1 AND status = 'PENDING' ORDER BY created_at""",
        cluster_id,
    )
    return [PendingKubeconfig(r["operation_id"], r["duration_seconds"]) for r in rows]


async def store_kubeconfig(
    db: Executor, operation_id: str, *, key_id: str, nonce: bytes, ciphertext: bytes, expires_at: datetime
) -> bool:
    changed = await db.fetchval(
        """UPDATE kubeconfigs SET status = 'READY', key_id = $2, nonce = $3, ciphertext = $4, expires_at = $5,
                  ready_at = now()
            WHERE operation_id = $1 AND status = 'PENDING' RETURNING true""",
        operation_id,
        key_id,
        nonce,
        ciphertext,
        expires_at,
    )
    return bool(changed)


async def fail_kubeconfig(db: Executor, operation_id: str, error: str) -> None:
    await db.execute(
        "UPDATE kubeconfigs SET status = 'FAILED', error = $2 WHERE operation_id = $1 AND status = 'PENDING'",
        operation_id,
        error,
    )


async def kubeconfig(db: Executor, operation_id: str) -> KubeconfigRow | None:
    record = await db.fetchrow(f"SELECT {_KUBECONFIG_COLUMNS} FROM kubeconfigs WHERE operation_id = $1", operation_id)
    return _kubeconfig_row(record) if record is not None else None


async def latest_kubeconfig(db: Executor, organization_id: str, cluster_id: str) -> KubeconfigRow | None:
    record = await db.fetchrow(
        f"""SELECT {_KUBECONFIG_COLUMNS}, expires_at IS NOT NULL AND expires_at <= now() AS expired FROM kubeconfigs
             WHERE organization_id = $1 AND cluster_id = $2 ORDER BY created_at DESC LIMIT 1""",
        organization_id,
        cluster_id,
    )
    return _kubeconfig_row(record, expired=True) if record is not None else None


# --- vault credentials -----------------------------------------------------------------------


async def store_credentials(
    conn: Conn,
    *,
    organization_id: str,
    cluster_name: str,
    provider: str,
    account_id: str,
    region: str,
    bucket_name: str,
    key_id: str,
    nonce: bytes,
    ciphertext: bytes,
    force_update: bool,
) -> None:
    """Store (or with `force_update` replace) a cluster's credentials; else CredentialsExist."""
    row = await conn.fetchrow(
        """INSERT INTO vault_credentials (organization_id, cluster_name, provider, account_id, region, bucket_name,
               key_id, nonce, ciphertext, status, last_validated)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'STORED', now())
           ON CONFLICT (organization_id, cluster_name) DO UPDATE
              SET provider = EXCLUDED.provider, account_id = EXCLUDED.account_id, region = EXCLUDED.region,
                  bucket_name = EXCLUDED.bucket_name, key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
                  ciphertext = EXCLUDED.ciphertext, status = 'STORED', last_validated = now(), updated_at = now()
            WHERE $10
           RETURNING cluster_name""",
        organization_id,
        cluster_name,
        provider,
        account_id,
        region,
        bucket_name,
        key_id,
        nonce,
        ciphertext,
        force_update,
    )
    if row is None:
        raise CredentialsExist(cluster_name)


async def credentials_status(db: Executor, organization_id: str, cluster_name: str) -> CredentialsStatusRow | None:
    """Everything about stored credentials except the sealed values."""
    record = await db.fetchrow(
        """SELECT cluster_name, provider, account_id, region, bucket_name, key_id, status, last_validated,
                  created_at, updated_at
             FROM vault_credentials WHERE organization_id = $1 AND cluster_name = $2""",
        organization_id,
        cluster_name,
    )
    if record is None:
        return None
    return CredentialsStatusRow(
        cluster_name=record["cluster_name"],
        provider=record["provider"],
        account_id=record["account_id"],
        region=record["region"],
        bucket_name=record["bucket_name"],
        key_id=record["key_id"],
        status=record["status"],
        last_validated=record["last_validated"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


async def delete_credentials(db: Executor, organization_id: str, cluster_name: str) -> bool:
    deleted = await db.fetchval(
        "DELETE FROM vault_credentials WHERE organization_id = $1 AND cluster_name = $2 RETURNING true",
        organization_id,
        cluster_name,
    )
    return bool(deleted)
