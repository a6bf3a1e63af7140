"""API keys: create (the secret is shown once), list, get, status, stats, revoke, delete.

Managing keys needs the admin role, and a key can never be given a role above the role of the
key that creates it. Listings show keys masked (`cfk_` + lookup prefix); only a hash of the
secret is stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from clusterflow.api.deps import Admin, Pool
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.read_caches import ReadCaches
from clusterflow.api.schemas.common import ERRORS, Envelope, Strict
from clusterflow.api.views import timestamp
from clusterflow.records import organizations as orgs
from clusterflow.records.organizations import KEY_PREFIX, ROLES, KeyRow

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])

MAX_DURATION = timedelta(days=365)
DEFAULT_DURATION = timedelta(days=90)
_GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: int | str) -> timedelta:
    """Seconds, or a Go-style duration such as "24h", "90m", "1h30m"."""
    if isinstance(value, int):
        return timedelta(seconds=value)
    match = _GO_DURATION.match(value.strip())
    if not value.strip() or match is None:
        raise ValueError("duration must be seconds or a duration like 24h, 30m, 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "editor", "admin", "owner"] = "viewer"
    duration: (
        Annotated[int, Field(ge=1, le=int(MAX_DURATION.total_seconds()))]
        | Annotated[str, Field(min_length=2, max_length=16, pattern=r"^([0-9]{1,4}h)?([0-9]{1,6}m)?([0-9]{1,8}s)?$")]
        | None
    ) = Field(default=None, description="Validity: seconds or a duration like 24h (default 90 days, at most 365 days)")
    isPermanent: bool = False
    source: Literal["cli", "ui", "api"] = "api"
    orgId: str | None = Field(default=None, max_length=64, description="Must be the caller's organization if given")

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: int | str | None) -> int | str | None:
        if value is None:
            return value
        span = parse_duration(value)
        if span <= timedelta(0) or span > MAX_DURATION:
            raise ValueError("duration must be positive and at most 365 days")
        return value


class KeyView(BaseModel):
    id: str
    name: str
    orgId: str
    role: str
    maskedKey: str
    status: Literal["ACTIVE", "EXPIRED", "REVOKED"]
    isPermanent: bool
    createdAt: str
    expiresAt: str | None
    duration: str | None
    lastUsedAt: str | None
    revokedAt: str | None
    revokedBy: str | None
    revokedReason: str | None
    source: str
    userId: str | None = Field(description="The key that created this one")


class CreatedKey(KeyView):
    key: str = Field(description="The secret. Shown once; store it now")


class RevokeRequest(Strict):
    reason: str | None = Field(default=None, max_length=500)


class KeyDeleted(BaseModel):
    keyId: str
    success: bool


class NearestExpiringKey(BaseModel):
    expiresAt: str
    maskedKey: str


class KeyStats(BaseModel):
    activeKeyCount: int
    expiredKeyCount: int
    revokedKeyCount: int
    nearestExpiringKey: NearestExpiringKey | None


def key_view(row: KeyRow) -> dict[str, Any]:
    expires, created = row.expires_at, row.created_at
    return {
        "id": row.id,
        "name": row.name,
        "orgId": row.organization_id,
        "role": row.role,
        "maskedKey": f"{KEY_PREFIX}{row.key_prefix}{'*' * 8}",
        "status": row.status,
        "isPermanent": expires is None,
        "createdAt": timestamp(created),
        "expiresAt": timestamp(expires),
        "duration": f"{int((expires - created).total_seconds())}s" if expires else None,
        "lastUsedAt": timestamp(row.last_used_at),
        "revokedAt": timestamp(row.revoked_at),
        "revokedBy": row.revoked_by,
        "revokedReason": row.revoke_reason,
        "source": row.source,
        "userId": row.created_by,
    }


@router.post("", status_code=201, response_model=Envelope[CreatedKey], responses=ERRORS, summary="Create an API key")
async def create_key(request: Request, body: KeyCreate, principal: Admin, pool: Pool) -> Envelope[CreatedKey]:
    if body.orgId is not None and body.orgId != principal.organization_id:
        raise not_found("organization", body.orgId)
    if ROLES.index(body.role) > ROLES.index(principal.role):
        raise ApiError(
            403, "ROLE_ABOVE_CREATOR", f"a {principal.role} key cannot create a {body.role} key", {"field": "role"}
        )
    if body.isPermanent and body.duration is not None:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            "give either duration or isPermanent, not both",
            [{"field": "duration", "message": "not allowed with isPermanent", "type": "conflict"}],
        )
    expires = (
        None
        if body.isPermanent
        else datetime.now(UTC) + (parse_duration(body.duration) if body.duration is not None else DEFAULT_DURATION)
    )
    key_id, secret = await orgs.create_api_key(
        pool,
        principal.organization_id,
        body.name,
        body.role,
        created_by=principal.key_id,
        expires_at=expires,
        source=body.source,
    )
    row = await orgs.get_key(pool, principal.organization_id, key_id)
    assert row is not None
    return Envelope(
        id=request_id_of(request),
        message="API key created; the secret is shown only now",
        data=CreatedKey(**key_view(row), key=secret),
    )


@router.get("", response_model=Envelope[list[KeyView]], responses=ERRORS, summary="List the organization's keys")
async def list_keys(request: Request, principal: Admin, pool: Pool) -> Envelope[list[KeyView]]:
    rows = await orgs.list_keys(pool, principal.organization_id)
    return Envelope(id=request_id_of(request), message=f"{len(rows)} keys", data=[KeyView(**key_view(r)) for r in rows])


@router.get("/stats", response_model=Envelope[KeyStats], responses=ERRORS, summary="Counts by status")
async def key_stats(request: Request, principal: Admin, pool: Pool) -> Envelope[KeyStats]:
    rows = await orgs.list_keys(pool, principal.organization_id)
    counts = {s: sum(r.status == s for r in rows) for s in ("ACTIVE", "EXPIRED", "REVOKED")}
    expiring = sorted(
        ((r.expires_at, r) for r in rows if r.status == "ACTIVE" and r.expires_at), key=lambda pair: pair[0]
    )
    nearest = (
        {"expiresAt": timestamp(expiring[0][0]) or "", "maskedKey": key_view(expiring[0][1])["maskedKey"]}
        if expiring
        else None
    )
    stats = KeyStats(
        activeKeyCount=counts["ACTIVE"],
        expiredKeyCount=counts["EXPIRED"],
        revokedKeyCount=counts["REVOKED"],
        nearestExpiringKey=nearest,
    )
    return Envelope(id=request_id_of(request), message="key statistics", data=stats)


async def _key_or_404(pool: Pool, organization_id: str, key_id: str) -> KeyRow:
    row = await orgs.get_key(pool, organization_id, key_id)
    if row is None:
        raise not_found("API key", key_id)
    return row


KeyId = Annotated[str, "the key's ID (not its secret)"]


def _not_yourself(caller: str, key_id: str) -> None:
    """Revoking or deleting the key making the request would lock its holder out mid-way."""
    if caller == key_id:
        raise ApiError(
            409,
            "CANNOT_REVOKE_OWN_KEY",
            "a key cannot revoke or delete itself; use another admin key",
            {"keyId": key_id},
        )


@router.get("/{keyId}", response_model=Envelope[KeyView], responses=ERRORS, summary="One key (masked)")
async def get_key(request: Request, keyId: KeyId, principal: Admin, pool: Pool) -> Envelope[KeyView]:
    row = await _key_or_404(pool, principal.organization_id, keyId)
    return Envelope(id=request_id_of(request), message="API key", data=KeyView(**key_view(row)))


def _forget_cached(request: Request, key_id: str) -> None:
    """Other API processes hear of the change by NOTIFY; this one forgets the key before answering."""
    caches: ReadCaches = request.app.state.caches
    caches.api_key_changed(key_id)


@router.get("/{keyId}/status", response_model=Envelope[KeyView], responses=ERRORS, summary="A key's status")
async def key_status(request: Request, keyId: KeyId, principal: Admin, pool: Pool) -> Envelope[KeyView]:
    row = await _key_or_404(pool, principal.organization_id, keyId)
    return Envelope(id=request_id_of(request), message=row.status.lower(), data=KeyView(**key_view(row)))


@router.post(
    "/{keyId}/revoke",
    response_model=Envelope[KeyView],
    responses=ERRORS,
    summary="Revoke a key; the record and the reason stay for audit",
)
async def revoke_key(
    request: Request, keyId: KeyId, body: RevokeRequest, principal: Admin, pool: Pool
) -> Envelope[KeyView]:
    row = await _key_or_404(pool, principal.organization_id, keyId)
    _not_yourself(principal.key_id, keyId)
    if not await orgs.revoke_key(pool, principal.organization_id, keyId, principal.key_id, body.reason):
        raise ApiError(409, "ALREADY_REVOKED", f"API key {keyId} was already revoked", {"keyId": keyId})
    _forget_cached(request, keyId)
    row = await _key_or_404(pool, principal.organization_id, keyId)
    return Envelope(id=request_id_of(request), message="API key revoked", data=KeyView(**key_view(row)))


@router.delete("/{keyId}", response_model=Envelope[KeyDeleted], responses=ERRORS, summary="Delete a key")
async def delete_key(request: Request, keyId: KeyId, principal: Admin, pool: Pool) -> Envelope[KeyDeleted]:
    _not_yourself(principal.key_id, keyId)
    if not await orgs.delete_key(pool, principal.organization_id, keyId):
        raise not_found("API key", keyId)
    _forget_cached(request, keyId)
    return Envelope(id=request_id_of(request), message="API key deleted", data=KeyDeleted(keyId=keyId, success=True))
