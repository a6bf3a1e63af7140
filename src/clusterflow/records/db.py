"""Connection pools with JSON codecs, so jsonb columns read and write as Python values."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg

# asyncpg classes are generic only in their stubs, so the alias is a string.
Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn
