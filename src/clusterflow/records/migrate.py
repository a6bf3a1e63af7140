"""Applies the ordered `migrations/NNNN_name.sql` files once each.

An advisory lock makes concurrent starters (several API or worker processes, a migration Job)
safe: one applies, the others wait and then find nothing to do. Each file runs in its own
transaction together with its bookkeeping row.
"""

from __future__ import annotations

import logging
from importlib import resources

from clusterflow.records.db import connect

log = logging.getLogger(__name__)

_LOCK_KEY = 0x636C7573  # "clus"


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("clusterflow.records") / "migrations"
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, (folder / name).read_text()) for name in files]


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; return the names applied."""
    conn = await connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            log.info("applied migration %s", name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        await conn.close()
    return applied
