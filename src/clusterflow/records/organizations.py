"""Organizations and API keys.

A key is `cfk_<prefix><secret><checksum>`: the 8-character prefix finds the row, SHA-256 of
the whole key is what we store (keys are 190 bits of randomness, so a slow hash adds nothing),
and the CRC32 checksum lets a secret scanner recognize a leaked key offline.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from clusterflow.ids import new_id, organization_id
from clusterflow.records.db import Conn, Executor, Record

KEY_PREFIX = "cfk_"
_ALPHABET = string.ascii_letters + string.digits
_PREFIX_LEN = 8
_SECRET_LEN = 32
_CHECKSUM_LEN = 6
ROLES = ("viewer", "editor", "admin", "owner")


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def generate_key() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_PREFIX_LEN + _SECRET_LEN))
    return f"{KEY_PREFIX}{body}{_base62(zlib.crc32(body.encode()), _CHECKSUM_LEN)}"


def parse_key(key: str) -> str | None:
    """The lookup prefix of a well-formed key with a valid checksum, else None."""
    if not key.startswith(KEY_PREFIX) or len(key) != len(KEY_PREFIX) + _PREFIX_LEN + _SECRET_LEN + _CHECKSUM_LEN:
        return None
    body, checksum = key[len(KEY_PREFIX) : -_CHECKSUM_LEN], key[-_CHECKSUM_LEN:]
    if not all(c in _ALPHABET for c in body) or _base62(zlib.crc32(body.encode()), _CHECKSUM_LEN) != checksum:
        return None
    return body[:_PREFIX_LEN]


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key, its organization and its role."""

    key_id: str
    organization_id: str
    role: str
    name: str
    expires_at: datetime | None = None

    def valid_now(self) -> bool:
        """False once the key has expired (a principal may outlive the check that made it)."""
        return self.expires_at is None or self.expires_at > datetime.now(UTC)

    def has_role(self, needed: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)


async def create_organization(db: Executor, name: str) -> str:
    org_id = organization_id()
    await db.execute("INSERT INTO organizations (id, name) VALUES ($1, $2)", org_id, name)
    return org_id


async def find_organization_by_name(db: Executor, name: str) -> str | None:
    value = await db.fetchval("SELECT id FROM organizations WHERE name = $1 ORDER BY id LIMIT 1", name)
    return str(value) if value is not None else None


async def create_api_key(
    db: Executor,
    organization_id: str,
    name: str,
    role: str,
    *,
    created_by: str | None = None,
    expires_at: datetime | None = None,
    source: str = "api",
) -> tuple[str, str]:
    """Create a key; return (key ID, the secret key). The secret is not stored."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role}")
    key = generate_key()
    prefix = parse_key(key)
    assert prefix is not None
    key_id = new_id("key")
    await db.execute(
        """INSERT INTO api_keys (id, organization_id, name, key_prefix, key_hash, role, created_by, expires_at, source)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        key_id,
        organization_id,
        name,
        prefix,
        hash_key(key),
        role,
        created_by,
        expires_at,
        source,
    )
    return key_id, key


async def authenticate(db: Executor, key: str) -> Principal | None:
    """The principal of a valid, unexpired, unrevoked key; None for anything else."""
    prefix = parse_key(key)
    if prefix is None:
        return None
    row = await db.fetchrow(
        """SELECT id, organization_id, role, name, key_hash, expires_at FROM api_keys
            WHERE key_prefix = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
        prefix,
    )
    if row is None or not hmac.compare_digest(bytes(row["key_hash"]), hash_key(key)):
        return None
    return Principal(
        key_id=row["id"],
        organization_id=row["organization_id"],
        role=row["role"],
        name=row["name"],
        expires_at=row["expires_at"],
    )


async def approval_policy(db: Executor, organization_id: str) -> dict[str, Any]:
    value = await db.fetchval("SELECT approval_policy FROM organizations WHERE id = $1", organization_id)
    return dict(value or {})


async def set_approval_policy(db: Executor, organization_id: str, policy: dict[str, bool]) -> None:
    await db.execute("UPDATE organizations SET approval_policy = $2 WHERE id = $1", organization_id, policy)


# --- organizations, members and keys as resources ---------------------------------------------

_KEY_COLUMNS = """id, organization_id, name, key_prefix, role, created_by, created_at, expires_at, revoked_at,
    revoke_reason, revoked_by, last_used_at, source,
    CASE WHEN revoked_at IS NOT NULL THEN 'REVOKED'
         WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'EXPIRED' ELSE 'ACTIVE' END AS status"""


@dataclass(frozen=True)
class OrganizationRow:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class KeyRow:
    """An API key as listed (`_KEY_COLUMNS`); never its secret or hash."""

    id: str
    organization_id: str
    name: str
    key_prefix: str
    role: str
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoke_reason: str | None
    revoked_by: str | None
    last_used_at: datetime | None
    source: str
    status: str
    """ACTIVE, EXPIRED or REVOKED, as of the query."""


@dataclass(frozen=True)
class MemberRow:
    id: str
    email: str
    name: str | None
    role: str
    created_at: datetime


def _key_row(record: Record) -> KeyRow:
    return KeyRow(
        id=record["id"],
        organization_id=record["organization_id"],
        name=record["name"],
        key_prefix=record["key_prefix"],
        role=record["role"],
        created_by=record["created_by"],
        created_at=record["created_at"],
        expires_at=record["expires_at"],
        revoked_at=record["revoked_at"],
        revoke_reason=record["revoke_reason"],
        revoked_by=record["revoked_by"],
        last_used_at=record["last_used_at"],
        source=record["source"],
        status=record["status"],
    )


async def get_organization(db: Executor, organization_id: str) -> OrganizationRow | None:
    record = await db.fetchrow("SELECT id, name, created_at FROM organizations WHERE id = $1", organization_id)
    if record is None:
        return None
    return OrganizationRow(id=record["id"], name=record["name"], created_at=record["created_at"])


async def list_keys(db: Executor, organization_id: str) -> list[KeyRow]:
    rows = await db.fetch(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE organization_id = $1 ORDER BY created_at DESC, id DESC",
        organization_id,
    )
    return [_key_row(r) for r in rows]


async def get_key(db: Executor, organization_id: str, key_id: str) -> KeyRow | None:
    record = await db.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE organization_id = $1 AND id = $2", organization_id, key_id
    )
    return _key_row(record) if record is not None else None


async def key_status(db: Executor, key: str) -> KeyRow | None:
    """The record of a presented key (whatever its status), if the key is genuine."""
    prefix = parse_key(key)
    if prefix is None:
        return None
    row: Record | None = await db.fetchrow(
        f"SELECT {_KEY_COLUMNS}, key_hash FROM api_keys WHERE key_prefix = $1", prefix
    )
    if row is None or not hmac.compare_digest(bytes(row["key_hash"]), hash_key(key)):
        return None
    return _key_row(row)


async def revoke_key(db: Executor, organization_id: str, key_id: str, revoked_by: str, reason: str | None) -> bool:
    """Revoke a key (kept, with who and why, for audit); false if unknown or already revoked."""
    changed = await db.fetchval(
        """UPDATE api_keys SET revoked_at = now(), revoked_by = $3, revoke_reason = $4
            WHERE organization_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING true""",
        organization_id,
        key_id,
        revoked_by,
        reason,
    )
    return bool(changed)


async def delete_key(db: Executor, organization_id: str, key_id: str) -> bool:
    """Delete a key's record. Audit events keep its ID."""
    deleted = await db.fetchval(
        "DELETE FROM api_keys WHERE organization_id = $1 AND id = $2 RETURNING true", organization_id, key_id
    )
    return bool(deleted)


async def touch_keys(db: Executor, last_used: dict[str, datetime]) -> None:
    """Record when keys were last used, many at once (the API batches these in memory)."""
    if not last_used:
        return
    await db.execute(
        """UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, u.at)
             FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id""",
        list(last_used),
        list(last_used.values()),
    )


async def list_members(db: Executor, organization_id: str) -> list[MemberRow]:
    rows = await db.fetch(
        "SELECT id, email, name, role, created_at FROM members WHERE organization_id = $1 ORDER BY created_at, id",
        organization_id,
    )
    return [
        MemberRow(id=r["id"], email=r["email"], name=r["name"], role=r["role"], created_at=r["created_at"])
        for r in rows
    ]


async def add_member(db: Executor, organization_id: str, email: str, name: str | None, role: str) -> str | None:
    """Add a member; None if the email is already a member."""
    member_id = new_id("mem")
    inserted = await db.fetchval(
        """INSERT INTO members (id, organization_id, email, name, role) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (organization_id, email) DO NOTHING RETURNING id""",
        member_id,
        organization_id,
        email,
        name,
        role,
    )
    return str(inserted) if inserted else None


async def remove_member(conn: Conn, organization_id: str, member_id: str) -> str:
    """Remove a member: "removed", "not_found", or "last_owner" (refused: an organization
    always keeps an owner). Owners are counted under a lock so two removals cannot race."""
    async with conn.transaction():
        owners = await conn.fetch(
            "SELECT id FROM members WHERE organization_id = $1 AND role = 'owner' FOR UPDATE", organization_id
        )
        role = await conn.fetchval(
            "SELECT role FROM members WHERE organization_id = $1 AND id = $2", organization_id, member_id
        )
        if role is None:
            return "not_found"
        if role == "owner" and len(owners) <= 1:
            return "last_owner"
        await conn.execute("DELETE FROM members WHERE organization_id = $1 AND id = $2", organization_id, member_id)
        return "removed"


# --- the first owner key of an installation ---------------------------------------------------


@dataclass(frozen=True)
class OwnerKeyIssue:
    """What `ensure_organization_owner_key` did. `key` is the secret, present only when a key
    was issued: it is not stored and cannot be shown again."""

    organization_id: str
    organization_created: bool
    key_id: str | None
    key: str | None
    revoked_key_ids: tuple[str, ...]


async def ensure_organization_owner_key(
    conn: Conn,
    name: str,
    *,
    owner_email: str | None,
    key_name: str,
    created_by: str,
    source: str,
    when_exists: Literal["keep", "issue", "rotate"],
    store: Callable[[OwnerKeyIssue], Awaitable[None]] | None = None,
) -> OwnerKeyIssue:
    """Create organization `name` with its owner member and an owner key, in one transaction.

    If it exists: `keep` changes nothing, `issue` adds an owner key, `rotate` revokes the
    active keys of `source` and issues one. Starters are serialized per name by an advisory
    lock, so two at once (two Jobs, two `make run`) never create the organization twice.
    `store` runs before the commit when a key was issued: if it cannot keep the key (a
    Kubernetes Secret), it raises and nothing is created, so no key exists that nobody holds.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"clusterflow.organization:{name}")
        org_id = await find_organization_by_name(conn, name)
        created = org_id is None
        if org_id is None:
            org_id = await create_organization(conn, name)
            if owner_email:
                await add_member(conn, org_id, owner_email, None, "owner")
        elif when_exists == "keep":
            return OwnerKeyIssue(org_id, False, None, None, ())
        revoked: tuple[str, ...] = ()
        if not created and when_exists == "rotate":
            rows = await conn.fetch(
                """UPDATE api_keys SET revoked_at = now(), revoked_by = $3, revoke_reason = 'rotated'
                    WHERE organization_id = $1 AND source = $2 AND revoked_at IS NULL RETURNING id""",
                org_id,
                source,
                created_by,
            )
            revoked = tuple(sorted(str(r["id"]) for r in rows))
        key_id, key = await create_api_key(conn, org_id, key_name, "owner", created_by=created_by, source=source)
        issued = OwnerKeyIssue(org_id, created, key_id, key, revoked)
        if store is not None:
            await store(issued)
        return issued
