"""Connection pools with JSON codecs, so jsonb columns read and write as Python values.

A pool may bound how long a borrower waits for a connection (`acquire_timeout`): the API's pool
does, so a pool that is exhausted or a database that does not answer becomes a `TimeoutError`
the API answers as 503 instead of a request that waits forever; workers' pools wait.
"""

from __future__ import annotations

import asyncio
import json
import socket
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
    _Pool: TypeAlias = asyncpg.Pool[Any]
else:  # FastAPI evaluates dependency annotations at run time, where Pool is not generic
    DbPool = asyncpg.Pool
    _Connection = asyncpg.Connection
    _Pool = asyncpg.Pool


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class _PooledConnection(_Connection):
    """A pooled connection released without the reset query.

    asyncpg's default release sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`,
    one more round trip per borrow. Pooled connections here never hold session state: advisory
    locks are transaction-scoped, cursors live inside transactions, LISTEN has its own dedicated
    connection (`records/change_listener.py`) and nothing runs a session's SET (`SET LOCAL` ends
    with its transaction). asyncpg still rolls back a transaction
    left open and drops listeners on release.
    """

    def get_reset_query(self) -> str:
        return ""


class _BoundedPool(_Pool):
    """A pool whose `acquire` (also under `fetch`, `execute`, ...) waits at most `acquire_timeout`
    seconds unless the caller gives its own timeout; None waits as long as it takes."""

    acquire_timeout: float | None = None

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(
    dsn: str, min_size: int = 2, max_size: int = 20, *, acquire_timeout: float | None = None
) -> asyncpg.Pool[Any]:
    pool = _BoundedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        loop=None,
        command_timeout=30,
        connection_class=_PooledConnection,
        record_class=asyncpg.Record,
    )
    pool.acquire_timeout = acquire_timeout
    await pool
    return pool


async def connect(dsn: str) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


BROKEN_CONNECTION: tuple[type[Exception], ...] = (
    asyncpg.exceptions.InternalClientError,  # "cannot switch to state 12": the server left mid-exchange
    asyncio.IncompleteReadError,  # the socket closed inside a message
    socket.gaierror,  # the database's host name does not resolve (DNS down)
)


def connection_broken(err: BaseException) -> bool:
    """Whether `err` is the driver's own report of a connection the server dropped or never
    opened, besides its classes of connection errors (`records.errors.database_unavailable`): a
    query on a connection whose server shut down between two messages of one exchange raises
    an internal state error, not a connection error. A stale schema cache is not an outage."""
    return isinstance(err, BROKEN_CONNECTION) and not isinstance(err, asyncpg.exceptions.OutdatedSchemaCacheError)


async def ping(db: Executor) -> None:
    """Whether the database answers at all: one round trip, raising if it does not."""
    await db.fetchval("SELECT 1")
