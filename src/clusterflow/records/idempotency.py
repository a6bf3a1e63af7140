"""Idempotency keys: the first response to a keyed request, replayed for its repeats.

The key row is written in the same transaction as the operation it created, so a replay can
never point at an operation that does not exist, and a crash never leaves a key without one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from clusterflow.records.db import Conn, Executor
from clusterflow.records.errors import IdempotencyKeyReused


def request_fingerprint(method: str, path: str, body: Any) -> bytes:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).digest()


@dataclass
class StoredResponse:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str]


async def lock(conn: Conn, organization_id: str, key: str) -> None:
    """Serialize requests that share a key until this transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"idem:{organization_id}:{key}")


async def lookup(db: Executor, organization_id: str, key: str, fingerprint: bytes) -> StoredResponse | None:
    """The stored response for this key, None if unused; IdempotencyKeyReused if the key was
    used for a different request."""
    row = await db.fetchrow(
        """SELECT request_hash, status_code, response, headers FROM idempotency_keys
            WHERE organization_id = $1 AND key = $2""",
        organization_id,
        key,
    )
    if row is None:
        return None
    if bytes(row["request_hash"]) != fingerprint:
        raise IdempotencyKeyReused(key)
    return StoredResponse(row["status_code"], row["response"], row["headers"])


async def store(
    conn: Conn,
    organization_id: str,
    key: str,
    method: str,
    path: str,
    fingerprint: bytes,
    response: StoredResponse,
) -> None:
    """Record the response (under `lock`, so no concurrent request stores the same key)."""
    await conn.execute(
        """INSERT INTO idempotency_keys
               (organization_id, key, method, path, request_hash, status_code, response, headers)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        organization_id,
        key,
        method,
        path,
        fingerprint,
        response.status_code,
        response.body,
        response.headers,
    )


async def forget(db: Executor, organization_id: str, key: str) -> None:
    """Drop a key whose request did not take effect, so the client's retry runs anew."""
    await db.execute("DELETE FROM idempotency_keys WHERE organization_id = $1 AND key = $2", organization_id, key)
