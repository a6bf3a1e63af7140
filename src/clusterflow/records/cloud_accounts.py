"""Connected cloud accounts and each organization's ExternalId.

A row says how to reach a customer's account (role ARN, ExternalId through the organization),
never what credentials were issued: those are obtained afresh with every use and never stored.
The row is keyed by (organization, provider, account): reconnecting the same account reuses
it, so a cluster names an account and not one of its connection attempts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clusterflow.contracts.notifications import Topic
from clusterflow.records import notifications
from clusterflow.records.db import Conn, DbPool, Executor, Record

WAITING_FOR_ROLE = "WAITING_FOR_ROLE"
CONNECTED = "CONNECTED"
DEGRADED = "DEGRADED"
FAILED = "FAILED"
USABLE = (CONNECTED, DEGRADED)

_COLUMNS = """id, organization_id, provider, account_id, cluster_name, level, region, role_name, role_arn,
    session_seconds, status, operation_id, template_url, error, last_checked_at, last_verified_at,
    created_at, updated_at"""


@dataclass(frozen=True)
class CloudAccountRow:
    """A connected (or connecting) cloud account (`_COLUMNS`)."""

    id: str
    organization_id: str
    provider: str
    account_id: str
    cluster_name: str
    level: str
    region: str
    role_name: str
    role_arn: str
    session_seconds: int
    status: str
    operation_id: str | None
    template_url: str | None
    error: dict[str, Any] | None
    """What the last connect or check found wrong (`message`, and a `code` when one applies)."""
    last_checked_at: datetime | None
    last_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    operation_status: str | None = None
    """The status of its latest connect operation (read by `lock_for_connect` only)."""


def _row(record: Record, operation_status: bool = False) -> CloudAccountRow:
    return CloudAccountRow(
        id=record["id"],
        organization_id=record["organization_id"],
        provider=record["provider"],
        account_id=record["account_id"],
        cluster_name=record["cluster_name"],
        level=record["level"],
        region=record["region"],
        role_name=record["role_name"],
        role_arn=record["role_arn"],
        session_seconds=record["session_seconds"],
        status=record["status"],
        operation_id=record["operation_id"],
        template_url=record["template_url"],
        error=record["error"],
        last_checked_at=record["last_checked_at"],
        last_verified_at=record["last_verified_at"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        operation_status=record["operation_status"] if operation_status else None,
    )


def _maybe(record: Record | None) -> CloudAccountRow | None:
    return _row(record) if record is not None else None


@dataclass(frozen=True)
class ClusterHint:
    """Where a live cluster runs, to default a connect request's target."""

    region: str
    account_id: str | None
    """The cluster spec's `provisioner.eks.accountId`, if it names one."""


def cloud_account_id(organization_id: str, provider: str, account_id: str) -> str:
    """Deterministic, so a request can name the row before (and whether or not) it exists."""
    return f"ca_{organization_id.removeprefix('org_')}_{provider}_{account_id}"


def aws_role_name(organization_id: str) -> str:
    """The role the connect template creates; per organization so two can share an account."""
    return f"clusterflow-{organization_id.lower().replace('_', '-')}"[:64]


async def external_id(db: Executor, organization_id: str, provider: str) -> str:
    """The organization's ExternalId for `provider`, created on first use."""
    candidate = f"cf-{secrets.token_urlsafe(24)}"
    value = await db.fetchval(
        """WITH inserted AS (
               INSERT INTO cloud_external_ids (organization_id, provider, external_id) VALUES ($1, $2, $3)
               ON CONFLICT (organization_id, provider) DO NOTHING RETURNING external_id)
           SELECT external_id FROM inserted
           UNION ALL SELECT external_id FROM cloud_external_ids WHERE organization_id = $1 AND provider = $2
           LIMIT 1""",
        organization_id,
        provider,
        candidate,
    )
    return str(value)


async def lock_for_connect(conn: Conn, organization_id: str, provider: str, account_id: str) -> CloudAccountRow | None:
    """The account's row, locked until the caller's transaction ends (None if never connected)."""
    record = await conn.fetchrow(
        f"""SELECT {_COLUMNS},
                  (SELECT status FROM operations o WHERE o.id = cloud_accounts.operation_id) AS operation_status
             FROM cloud_accounts WHERE organization_id = $1 AND provider = $2 AND account_id = $3 FOR UPDATE""",
        organization_id,
        provider,
        account_id,
    )
    return _row(record, operation_status=True) if record is not None else None


async def upsert_for_connect(
    conn: Conn,
    *,
    organization_id: str,
    provider: str,
    account_id: str,
    cluster_name: str,
    level: str,
    region: str,
    role_name: str,
    role_arn: str,
    session_seconds: int,
    operation_id: str,
) -> str:
    """Point the account at a new connect operation; return the row ID. A new or failed account
    waits for its role; a usable one stays usable until the new connect settles."""
    row_id = cloud_account_id(organization_id, provider, account_id)
    value = await conn.fetchval(
        """INSERT INTO cloud_accounts (id, organization_id, provider, account_id, cluster_name, level, region,
               role_name, role_arn, session_seconds, status, operation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'WAITING_FOR_ROLE', $11)
           ON CONFLICT (organization_id, provider, account_id) DO UPDATE SET
               cluster_name = EXCLUDED.cluster_name, level = EXCLUDED.level, region = EXCLUDED.region,
               role_name = EXCLUDED.role_name, role_arn = EXCLUDED.role_arn,
               session_seconds = EXCLUDED.session_seconds,
               -- A reconnect (forceUpdate) leaves a usable account usable while it is re-verified.
               status = CASE WHEN cloud_accounts.status IN ('CONNECTED', 'DEGRADED') THEN cloud_accounts.status
                             ELSE 'WAITING_FOR_ROLE' END,
               operation_id = EXCLUDED.operation_id, template_url = NULL, error = NULL, updated_at = now()
           RETURNING id""",
        row_id,
        organization_id,
        provider,
        account_id,
        cluster_name,
        level,
        region,
        role_name,
        role_arn,
        session_seconds,
        operation_id,
    )
    return str(value)


async def get(db: Executor, cloud_account_id: str) -> CloudAccountRow | None:
    return _maybe(await db.fetchrow(f"SELECT {_COLUMNS} FROM cloud_accounts WHERE id = $1", cloud_account_id))


async def get_for_org(db: Executor, organization_id: str, cloud_account_id: str) -> CloudAccountRow | None:
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM cloud_accounts WHERE organization_id = $1 AND id = $2",
        organization_id,
        cloud_account_id,
    )
    return _maybe(record)


async def find_usable(
    db: Executor, organization_id: str, provider: str, account_id: str | None
) -> CloudAccountRow | None:
    """A CONNECTED (or DEGRADED) account: the one named, else the most recently verified."""
    record = await db.fetchrow(
        f"""SELECT {_COLUMNS} FROM cloud_accounts
             WHERE organization_id = $1 AND provider = $2 AND ($3::text IS NULL OR account_id = $3)
               AND status = ANY($4::text[])
             ORDER BY last_verified_at DESC NULLS LAST LIMIT 1""",
        organization_id,
        provider,
        account_id,
        list(USABLE),
    )
    return _maybe(record)


async def list_usable(db: Executor, provider: str, limit: int = 1000) -> list[CloudAccountRow]:
    rows = await db.fetch(
        f"""SELECT {_COLUMNS} FROM cloud_accounts WHERE provider = $1 AND status = ANY($2::text[])
             ORDER BY last_checked_at NULLS FIRST LIMIT $3""",
        provider,
        list(USABLE),
        limit,
    )
    return [_row(r) for r in rows]


async def set_template_url(db: Executor, cloud_account_id: str, operation_id: str, url: str) -> None:
    await db.execute(
        "UPDATE cloud_accounts SET template_url = $3, updated_at = now() WHERE id = $1 AND operation_id = $2",
        cloud_account_id,
        operation_id,
        url,
    )


async def mark_connect_failed(db: Executor, cloud_account_id: str, operation_id: str, message: str) -> None:
    """A connect gave up: FAILED, unless the account was usable before (then DEGRADED: its old
    trust may still work, but it does not match what was asked; re-verification settles it)."""
    await db.execute(
        """UPDATE cloud_accounts SET error = $3, last_checked_at = now(), updated_at = now(),
                  status = CASE WHEN status IN ('CONNECTED', 'DEGRADED') THEN 'DEGRADED' ELSE 'FAILED' END
            WHERE id = $1 AND operation_id = $2""",
        cloud_account_id,
        operation_id,
        {"message": message},
    )


async def record_check(
    db: Executor,
    cloud_account_id: str,
    *,
    status: str | None,
    error: dict[str, Any] | None,
    verified: bool,
    operation_id: str | None = None,
) -> None:
    """Store the outcome of one check. With `operation_id`, only while that connect is the
    account's latest (a superseded connect must not overwrite a newer one's state)."""
    await db.execute(
        """UPDATE cloud_accounts SET status = COALESCE($2, status), error = $3, last_checked_at = now(),
                  last_verified_at = CASE WHEN $4 THEN now() ELSE last_verified_at END, updated_at = now()
            WHERE id = $1 AND ($5::text IS NULL OR operation_id = $5)""",
        cloud_account_id,
        status,
        error,
        verified,
        operation_id,
    )


async def record_reverify(pool: DbPool, row: CloudAccountRow, *, healthy: bool, message: str | None) -> str | None:
    """Store one re-verification; on a transition (CONNECTED <-> DEGRADED) queue a
    `cloud_account.disconnected` event in the same transaction and return the new status."""
    status = CONNECTED if healthy else DEGRADED
    async with pool.acquire() as conn, conn.transaction():
        previous = await conn.fetchval(
            "SELECT status FROM cloud_accounts WHERE id = $1 AND status = ANY($2::text[]) FOR UPDATE",
            row.id,
            list(USABLE),
        )
        if previous is None:  # a connect settled it otherwise meanwhile
            return None
        await record_check(
            conn, row.id, status=status, error=None if healthy else {"message": message}, verified=healthy
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
                "accountId": row.account_id,
                "clusterName": row.cluster_name,
                "status": status,
                "previousStatus": previous,
                "step": None if healthy else "assume role",
                "message": None if healthy else message,
                "remedy": None if healthy else "Create (or update) the stack from the latest template unchanged.",
            },
        )
        return status


async def cluster_hint(db: Executor, organization_id: str, cluster_name: str) -> ClusterHint | None:
    """Region and `provisioner.eks.accountId` of a live cluster, to default a request's target."""
    record = await db.fetchrow(
        """SELECT region, spec->'spec'->'provisioner'->'eks'->>'accountId' AS account_id FROM clusters
            WHERE organization_id = $1 AND name = $2 AND state <> 'DELETED'""",
        organization_id,
        cluster_name,
    )
    return ClusterHint(record["region"], record["account_id"]) if record is not None else None
