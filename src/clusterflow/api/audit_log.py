"""Audit middleware: one audit event per mutation and per refused request, after the fact.

Writing the event here, around every route, means no route can forget to: mutations (any
non-GET), approvals, cancels and key changes are recorded with the outcome the client saw, and
so are refused requests (401, 403, 429) of any method. Details are the route template, the
non-secret query parameters and the IDs in the answer; never request bodies, and never a
parameter that can hold a secret.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clusterflow.records.audit import AuditEvent, record

log = logging.getLogger(__name__)

_READS = {"GET", "HEAD", "OPTIONS"}
_REFUSALS = {401, 403, 429}
_SECRET_PARAMS = {"token", "apikey", "api_key", "key", "secret", "password", "credentials"}
_MAX_CAPTURE = 64 * 1024

_EVENT_TYPES = {
    "clusters": "CLUSTER",
    "operations": "OPERATION",
    "api-keys": "API_KEY",
    "organizations": "ORGANIZATION",
    "audit": "AUDIT",
    "cloud-accounts": "CLOUD_ACCOUNT",
    "cloud-credentials": "CLOUD_CREDENTIALS",
    "self-hosted": "VAULT",
    "notifications": "NOTIFICATION",
    "agent": "AGENT",
}


def _classify(method: str, template: str, status: int) -> tuple[str, str]:
    parts = [p for p in template.split("/") if p and p != "v1"]
    event_type = _EVENT_TYPES.get(parts[0] if parts else "", "API")
    last = parts[-1] if parts else ""
    if status in (401, 403):
        action = "ACCESS_DENIED"
    elif status == 429:
        action = "RATE_LIMITED"
    elif last in ("cancel", "revoke", "approval", "resync", "register"):
        action = {"approval": "DECIDE"}.get(last, last.upper())
    else:
        action = {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "UPDATE", "DELETE": "DELETE"}.get(method, method)
    return event_type, action


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        captured = bytearray()
        method = scope["method"]

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and method not in _READS and len(captured) < _MAX_CAPTURE:
                captured.extend(message.get("body", b"")[: _MAX_CAPTURE - len(captured)])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if method not in _READS or status in _REFUSALS:
                await self._record(scope, status, bytes(captured))

    async def _record(self, scope: Scope, status: int, body: bytes) -> None:
        app = scope.get("app")
        pool = getattr(getattr(app, "state", None), "pool", None)
        if pool is None:
            return
        state = scope.get("state", {})
        principal = state.get("principal")
        route = scope.get("route")
        template = str(getattr(route, "path", scope["path"]))
        event_type, action = _classify(scope["method"], template, status)
        path_params = dict(scope.get("path_params") or {})
        details: dict[str, Any] = {"method": scope["method"], "path": template}
        query = _safe_query(scope.get("query_string", b""))
        if query:
            details["query"] = query
        if path_params:
            details["pathParams"] = {k: v for k, v in path_params.items() if k.lower() not in _SECRET_PARAMS}
        resource_id = next(iter(path_params.values()), None)
        answer = _answer_ids(body)
        details.update(answer)
        if status >= 400:
            code = _error_code(body)
            if code:
                details["errorCode"] = code
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", [])}
        client = scope.get("client")
        event = AuditEvent(
            organization_id=principal.organization_id if principal else None,
            event_type=event_type,
            action=action,
            resource=template,
            resource_id=resource_id or answer.get("operationId") or answer.get("id"),
            actor=principal.key_id if principal else None,
            actor_role=principal.role if principal else None,
            request_id=state.get("request_id"),
            ip_address=client[0] if client else None,
            user_agent=headers.get("user-agent", "")[:512],
            success=200 <= status < 400,
            status_code=status,
            details=details,
        )
        try:
            await record(pool, event)
        except Exception:  # the response is already sent; losing the row must not break serving
            log.exception("could not write audit event for request %s", state.get("request_id"))


def _safe_query(raw: bytes) -> dict[str, str]:
    return {k: v for k, v in parse_qsl(raw.decode(errors="replace")) if k.lower() not in _SECRET_PARAMS}


def _answer_ids(body: bytes) -> dict[str, Any]:
    """IDs and decisions from a JSON answer's `data` (never anything that could be a secret)."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(data, dict):
        return {}
    keep = ("operationId", "clusterId", "id", "keyId", "decision", "status")
    return {k: data[k] for k in keep if isinstance(data.get(k), str | bool | int)}


def _error_code(body: bytes) -> str | None:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None
