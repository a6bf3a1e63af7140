"""The local provider's simulated cloud, kept in PostgreSQL so it survives worker crashes.

It behaves like a cloud API: creating a resource is a call that returns at once and leaves
the resource CREATING until its `ready_at`; creating an existing resource is a no-op (like a
client request token); every call that changed something is logged in `local_api_calls`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from clusterflow.records.db import Conn, Executor


@dataclass(frozen=True)
class LocalResource:
    """A simulated resource as `describe` sees it, its state derived from the clock."""

    cluster_id: str
    kind: str
    name: str
    spec: dict[str, Any]
    """Free-form: owned by the local provider (`activities.providers.local`), which creates and merges it."""
    operation_id: str
    created_at: datetime
    state: str
    """CREATING, READY or DELETED."""
    seconds_left: float
    """Until it is READY (0 once it is)."""


@dataclass(frozen=True)
class LocalResourceSummary:
    """A simulated resource as `list_resources` lists it (`state` as stored, not derived)."""

    kind: str
    name: str
    state: str
    spec: dict[str, Any]
    """Free-form: owned by the local provider (`activities.providers.local`), which creates and merges it."""
    deleted_at: datetime | None


@dataclass(frozen=True)
class LocalApiCall:
    """One logged call that changed the simulated cloud."""

    kind: str
    name: str
    action: str
    """create, delete or update."""
    operation_id: str


async def create_resource(
    pool: asyncpg.Pool[Any],
    cluster_id: str,
    kind: str,
    name: str,
    operation_id: str,
    ready_in_seconds: float,
    spec: dict[str, Any] | None = None,
) -> bool:
    """Create a resource unless a live one exists; true if this call created it.

    A deleted resource of the same name is created anew (a node group removed by one update and
    added back by the next, or by a rollback), as a cloud lets a freed name be used again.
    """
    async with pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(
            """INSERT INTO local_resources (cluster_id, kind, name, state, spec, ready_at, operation_id)
               VALUES ($1, $2, $3, 'CREATING', $4, now() + make_interval(secs => $5), $6)
               ON CONFLICT (cluster_id, kind, name) DO UPDATE
                  SET state = 'CREATING', spec = EXCLUDED.spec, ready_at = EXCLUDED.ready_at,
                      operation_id = EXCLUDED.operation_id, created_at = now(), deleted_at = NULL
                WHERE local_resources.deleted_at IS NOT NULL
               RETURNING true""",
            cluster_id,
            kind,
            name,
            spec or {},
            ready_in_seconds,
            operation_id,
        )
        if created:
            await _log_call(conn, cluster_id, kind, name, "create", operation_id)
        return bool(created)


async def delete_resource(pool: asyncpg.Pool[Any], cluster_id: str, kind: str, name: str, operation_id: str) -> bool:
    """Delete a resource if it exists; true if this call deleted it (deleting twice is a no-op)."""
    async with pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            """UPDATE local_resources SET deleted_at = now()
                WHERE cluster_id = $1 AND kind = $2 AND name = $3 AND deleted_at IS NULL
                RETURNING true""",
            cluster_id,
            kind,
            name,
        )
        if deleted:
            await _log_call(conn, cluster_id, kind, name, "delete", operation_id)
        return bool(deleted)


async def update_resource(
    pool: asyncpg.Pool[Any], cluster_id: str, kind: str, name: str, operation_id: str, spec: dict[str, Any]
) -> bool:
    """Merge `spec` into a live resource; true if anything changed (same spec twice: no-op)."""
    async with pool.acquire() as conn, conn.transaction():
        changed = await conn.fetchval(
            """UPDATE local_resources SET spec = spec || $4
                WHERE cluster_id = $1 AND kind = $2 AND name = $3 AND deleted_at IS NULL
                  AND NOT (spec @> $4)
                RETURNING true""",
            cluster_id,
            kind,
            name,
            spec,
        )
        if changed:
            await _log_call(conn, cluster_id, kind, name, "update", operation_id)
        return bool(changed)


async def _log_call(conn: Conn, cluster_id: str, kind: str, name: str, action: str, operation_id: str) -> None:
    await conn.execute(
        """INSERT INTO local_api_calls (cluster_id, kind, name, action, operation_id)
           VALUES ($1, $2, $3, $4, $5)""",
        cluster_id,
        kind,
        name,
        action,
        operation_id,
    )


async def describe(db: Executor, cluster_id: str, kind: str, name: str) -> LocalResource | None:
    """The resource with its state derived from the clock: CREATING until ready_at."""
    record = await db.fetchrow(
        """SELECT cluster_id, kind, name, spec, operation_id, created_at,
                  CASE WHEN deleted_at IS NOT NULL THEN 'DELETED'
                       WHEN ready_at <= now() THEN 'READY' ELSE 'CREATING' END AS state,
                  GREATEST(0, EXTRACT(EPOCH FROM ready_at - now()))::float8 AS seconds_left
             FROM local_resources WHERE cluster_id = $1 AND kind = $2 AND name = $3""",
        cluster_id,
        kind,
        name,
    )
    if record is None:
        return None
    return LocalResource(
        cluster_id=record["cluster_id"],
        kind=record["kind"],
        name=record["name"],
        spec=record["spec"],
        operation_id=record["operation_id"],
        created_at=record["created_at"],
        state=record["state"],
        seconds_left=record["seconds_left"],
    )


async def list_resources(db: Executor, cluster_id: str, live_only: bool = False) -> list[LocalResourceSummary]:
    """The cluster's resources in creation order (with `live_only`, the undeleted ones)."""
    rows = await db.fetch(
        """SELECT kind, name, state, spec, deleted_at FROM local_resources
            WHERE cluster_id = $1 AND (NOT $2 OR deleted_at IS NULL) ORDER BY created_at, kind, name""",
        cluster_id,
        live_only,
    )
    return [
        LocalResourceSummary(
            kind=r["kind"], name=r["name"], state=r["state"], spec=r["spec"], deleted_at=r["deleted_at"]
        )
        for r in rows
    ]


async def api_calls(db: Executor, cluster_id: str) -> list[LocalApiCall]:
    rows = await db.fetch(
        "SELECT kind, name, action, operation_id FROM local_api_calls WHERE cluster_id = $1 ORDER BY id",
        cluster_id,
    )
    return [
        LocalApiCall(kind=r["kind"], name=r["name"], action=r["action"], operation_id=r["operation_id"]) for r in rows
    ]
