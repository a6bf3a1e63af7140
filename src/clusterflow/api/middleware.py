"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams and costs a task per request).

Every response carries `X-Request-ID`; the same ID is in the envelope and in log lines.
Authenticated answers also carry `RateLimit-Limit`, `-Remaining` and `-Reset` for the key. Bodies
larger than the configured limit, bodies in a media type no route takes (or not in UTF-8), and
NUL characters, are refused before a route reads them.
`ObservabilityMiddleware` adds the log context, the request's span and its metrics.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from opentelemetry import propagate, trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clusterflow import metrics
from clusterflow.api.strict_requests import ANY_ROUTE_MEDIA_TYPES, BODY_METHODS, has_body, media_type_problem
from clusterflow.ids import request_id
from clusterflow.logs import operation_var, organization_var, request_id_var

access_log = logging.getLogger("clusterflow.access")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                limit = state.get("rate_limit")
                if limit is not None:
                    headers += limit.headers()
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class RequestHygieneMiddleware:
    """Refuses, before any route runs: bodies over the size limit (413), bodies that are not JSON
    in UTF-8 (415: FastAPI would otherwise parse a form, XML or UTF-16 as JSON, or fail on it
    with a 400 that hides the real problem), and NUL characters in the path, query or JSON
    body (400), which PostgreSQL cannot store in text and which no legitimate request carries."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send, TOO_LARGE)
            return
        if scope["method"] in BODY_METHODS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if has_body(headers):
                content_type = headers.get("content-type")
                problem = media_type_problem(content_type, ANY_ROUTE_MEDIA_TYPES)
                if problem is not None:
                    details = {
                        "field": "Content-Type",
                        "received": content_type,
                        "accepted": sorted(ANY_ROUTE_MEDIA_TYPES),
                    }
                    await self._send(scope, send, 415, "UNSUPPORTED_MEDIA_TYPE", problem, details)
                    return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
            await self._refuse(scope, send, NUL)
            return
        seen = 0
        tail = b""

        async def checked_receive() -> Message:
            nonlocal seen, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.max_bytes:
                    raise Refused(TOO_LARGE)
                window = tail + chunk
                if b"\\u0000" in window or b"\x00" in window:
                    raise Refused(NUL)
                tail = window[-5:]
            return message

        try:
            await self.app(scope, checked_receive, send)
        except Refused as refused:
            await self._refuse(scope, send, refused.reason)

    async def _refuse(self, scope: Scope, send: Send, reason: str) -> None:
        status, code, message, details = (
            (413, "BODY_TOO_LARGE", f"request body is larger than {self.max_bytes} bytes", {"maxBytes": self.max_bytes})
            if reason == TOO_LARGE
            else (400, "NUL_CHARACTER", "NUL characters are not accepted in paths, queries or bodies", None)
        )
        await self._send(scope, send, status, code, message, details)

    async def _send(self, scope: Scope, send: Send, status: int, code: str, message: str, details: Any) -> None:
        rid = scope.get("state", {}).get("request_id", "")
        body = json.dumps(
            {"id": rid, "status": "error", "message": message, "error": {"code": code, "details": details}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


TOO_LARGE = "too large"
NUL = "nul"


class Refused(Exception):
    """Raised while streaming a body that must be refused (chunked uploads declare no length)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class ObservabilityMiddleware:
    """Per request: log context, a server span, request metrics by route template, an access line.

    Sits inside RequestIdMiddleware (it reads the request ID that one assigns). The route
    template comes from the route FastAPI matched (`scope["route"]`), so metric labels stay
    bounded; unmatched paths are counted as `unmatched`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = trace.get_tracer("clusterflow.api")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")
        request_id_var.set(rid)
        organization_var.set(None)
        operation_var.set(None)
        method = scope["method"]
        status = 500
        started = time.perf_counter()
        first_byte: float | None = None
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parent = propagate.extract(carrier)

        async def send_observed(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
                first_byte = time.perf_counter()
            await send(message)

        with self.tracer.start_as_current_span(
            f"{method} {scope['path']}", context=parent, kind=trace.SpanKind.SERVER
        ) as span:
            try:
                await self.app(scope, receive, send_observed)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                elapsed = (first_byte or time.perf_counter()) - started
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if rid:
                    span.set_attribute("clusterflow.request_id", rid)
                if status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
                metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
                metrics.HTTP_DURATION.labels(method, route).observe(elapsed)
                operation = (scope.get("path_params") or {}).get("operationId")
                if operation and operation_var.get() is None:
                    operation_var.set(operation)
                if route not in _QUIET_ROUTES:
                    access_log.info("%s %s %s %.1fms", method, scope["path"], status, elapsed * 1000)
