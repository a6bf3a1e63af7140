"""API processes alive right now: each beats a row, so the rate limiter can split its budget."""

from __future__ import annotations

from clusterflow.records.db import Executor


async def heartbeat(db: Executor, instance_id: str, live_seconds: float) -> int:
    """Beat this process's row and answer how many API processes are live (itself included):
    those that beat within `live_seconds`.

    Rows of processes that died without deregistering (SIGKILL, OOM, a lost node) are never
    counted once stale, and are deleted long after (ten times `live_seconds`, at least an hour),
    so the table does not grow with every crash.
    """
    live = await db.fetchval(
        """WITH beat AS (
               INSERT INTO api_instances (id) VALUES ($1)
               ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()),
           dead AS (
               DELETE FROM api_instances
                WHERE heartbeat_at < now() - make_interval(secs => greatest($2::float8 * 10, 3600)))
           SELECT count(*) + 1 FROM api_instances
            WHERE id <> $1 AND heartbeat_at > now() - make_interval(secs => $2)""",
        instance_id,
        live_seconds,
    )
    return int(live or 1)


async def deregister(db: Executor, instance_id: str) -> None:
    """Remove this process's row: it no longer takes a share of the rate limits."""
    await db.execute("DELETE FROM api_instances WHERE id = $1", instance_id)
