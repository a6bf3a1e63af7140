"""Request dependencies: the pool, the Temporal client, settings, and the caller's identity;
and `OperationContext`, all of them at once for the routes that start or steer operations.

Authentication accepts `Authorization: Bearer <key>` or `X-API-Key: <key>`. Unknown, revoked
and expired keys get the same 401, so a caller cannot probe which keys exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from temporalio.client import Client

from clusterflow import metrics
from clusterflow.api.errors import ApiError
from clusterflow.api.read_caches import ReadCaches
from clusterflow.api.security import ApiGuards, rate_class, retry_after_header
from clusterflow.api.streams import StreamHub
from clusterflow.logs import bind
from clusterflow.records import idempotency
from clusterflow.records.db import DbPool
from clusterflow.records.organizations import Principal, authenticate, hash_key
from clusterflow.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


# Dependencies are coroutines even when they do not await: FastAPI runs a plain function in a
# worker thread, which costs more than the whole lookup.
async def get_pool(request: Request) -> DbPool:
    return request.app.state.pool  # type: ignore[no-any-return]


async def get_temporal(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_hub(connection: HTTPConnection) -> StreamHub:
    return connection.app.state.hub  # type: ignore[no-any-return]


Pool = Annotated[DbPool, Depends(get_pool)]
Hub = Annotated[StreamHub, Depends(get_hub)]
Temporal = Annotated[Client, Depends(get_temporal)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]


async def get_principal(
    request: Request,
    pool: Pool,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> Principal:
    key = (bearer.credentials if bearer else None) or header_key
    unauthorized = ApiError(401, "UNAUTHORIZED", "a valid API key is required", headers={"WWW-Authenticate": "Bearer"})
    if not key:
        raise unauthorized
    principal = await _authenticate(request, pool, key)
    if principal is None:
        raise unauthorized
    request.state.principal = principal
    bind(organization_id=principal.organization_id)
    guards: ApiGuards = request.app.state.guards
    guards.touch(principal.key_id)
    decision = guards.limiter.decide(principal.key_id, request.method)
    request.state.rate_limit = decision  # RequestIdMiddleware adds the RateLimit-* headers
    if decision.retry_after is not None:
        metrics.rate_limited(request.method, str(getattr(request.scope.get("route"), "path", "unmatched")))
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"too many {rate_class(request.method)} requests for this key; retry later",
            headers={"Retry-After": retry_after_header(decision.retry_after)},
        )
    return principal


async def _authenticate(request: Request, pool: DbPool, key: str) -> Principal | None:
    caches: ReadCaches = request.app.state.caches
    digest = hash_key(key)
    principal = caches.keys.get(digest)
    if principal is not None and principal.valid_now():
        return principal
    with caches.keys.reading(digest) as read:
        principal = await authenticate(pool, key)
        if principal is not None:
            read.store(principal)
    return principal


def require_role(role: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.has_role(role):
            raise ApiError(403, "FORBIDDEN", f"this action needs the {role} role; the key has {principal.role}")
        return principal

    dependency.required_role = role  # type: ignore[attr-defined]  # read by the authorization test matrix
    return dependency


_ROLES = {role: require_role(role) for role in ("viewer", "editor", "admin", "owner")}
Viewer = Annotated[Principal, Depends(_ROLES["viewer"])]
Editor = Annotated[Principal, Depends(_ROLES["editor"])]
Admin = Annotated[Principal, Depends(_ROLES["admin"])]
Owner = Annotated[Principal, Depends(_ROLES["owner"])]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Replays the first response for a repeated request",
    ),
]


@dataclass(frozen=True)
class OperationContext:
    """What every route that starts (or steers) an operation needs besides its own inputs: the
    request, the authorized caller, the pool, Temporal, settings and the `Idempotency-Key`."""

    request: Request
    principal: Principal
    pool: DbPool
    temporal: Client
    settings: Settings
    idempotency_key: str | None = None

    @property
    def organization_id(self) -> str:
        return self.principal.organization_id

    @property
    def caches(self) -> ReadCaches:
        return self.request.app.state.caches  # type: ignore[no-any-return]

    def fingerprint(self, body: Any, *, with_query: bool = False) -> bytes:
        """What a repeated `Idempotency-Key` must match: method, path (and query) and body."""
        path = str(self.request.url) if with_query else self.request.url.path
        return idempotency.request_fingerprint(self.request.method, path, body)


def operation_context(role: str, *, idempotent: bool = True) -> Callable[..., Awaitable[OperationContext]]:
    """The `OperationContext` dependency for a role; `idempotent` routes take an Idempotency-Key."""
    # A default, not an annotation: annotations here are strings FastAPI resolves in the
    # module's namespace, where this closure's role is not.
    role_check = Depends(_ROLES[role])

    if idempotent:

        async def keyed(
            request: Request,
            pool: Pool,
            temporal: Temporal,
            settings: AppSettings,
            idempotency_key: IdempotencyKey = None,
            principal: Principal = role_check,
        ) -> OperationContext:
            return OperationContext(request, principal, pool, temporal, settings, idempotency_key)

        return keyed

    async def unkeyed(
        request: Request, pool: Pool, temporal: Temporal, settings: AppSettings, principal: Principal = role_check
    ) -> OperationContext:
        return OperationContext(request, principal, pool, temporal, settings)

    return unkeyed


# A route that enqueues takes one of these plus its own inputs.
EditorOperation = Annotated[OperationContext, Depends(operation_context("editor"))]
AdminOperation = Annotated[OperationContext, Depends(operation_context("admin"))]
# Steering an existing operation (cancel): no Idempotency-Key.
EditorControl = Annotated[OperationContext, Depends(operation_context("editor", idempotent=False))]
