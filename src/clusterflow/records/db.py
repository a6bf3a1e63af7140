"""Connection pools with JSON codecs, so jsonb columns read and write as Python values."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

# asyncpg classes are generic only in their stubs, so the aliases are strings.
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
"""A connection, bare or borrowed from a pool; transactions are opened on these."""
Executor: TypeAlias = "Conn | asyncpg.Pool[Any]"
"""Anything that runs a single statement: a connection or the pool itself."""

Record: TypeAlias = asyncpg.Record
"""A row as the driver returns it, read by column name (`row["id"]`)."""

if TYPE_CHECKING:
    DbPool: TypeAlias = asyncpg.Pool[Any]
    _Connection: TypeAlias = asyncpg.Connection[Any]
else:  # FastAPI evaluates dependency annotations at run time, where Pool is not generic
    DbPool = asyncpg.Pool
    _Connection = asyncpg.Connection


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class _PooledConnection(_Connection):
    """A pooled connection released without the reset query.

    asyncpg's default release sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`,
    one more round trip per borrow. Pooled connections here never hold session state: advisory
    locks are transaction-scoped, cursors live inside transactions, LISTEN has its own dedicated
    connection (`records/change_listener.py`) and nothing runs SET. asyncpg still rolls back a transaction
    left open and drops listeners on release.
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        connection_class=_PooledConnection,
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def ping(db: Executor) -> None:
    """Whether the database answers at all: one round trip, raising if it does not."""
    await db.fetchval("SELECT 1")
