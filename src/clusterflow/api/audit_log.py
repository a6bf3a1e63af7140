"""Audit middleware: one audit event per mutation and per refused request, after the fact.

Writing the event here, around every route, means no route can forget to: mutations (any
non-GET), approvals, cancels and key changes are recorded with the outcome the client saw, and
so are refused requests (401, 403, 429) of any method. Details are the route template, the
non-secret query parameters and the IDs in the answer; never request bodies, and never a
parameter that can hold a secret.

Events are written by `AuditWriter`, not by the request: HTTP/1.1 serves a connection's next
request only once the previous one has returned, so an INSERT here made every client's next
request wait for its last one's audit row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clusterflow import metrics
from clusterflow.records.audit import AuditEvent, record_many
from clusterflow.records.db import DbPool
from clusterflow.records.errors import DATABASE_UNREACHABLE, DatabaseError

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
        writer: AuditWriter | None = getattr(getattr(app, "state", None), "audit", None)
        if writer is None:
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
            occurred_at=datetime.now(UTC),
        )
        writer.submit(event)


class AuditWriter:
    """Writes this API process's audit events behind the answers they describe.

    One task writes whatever has queued since its last write, in one transaction: alone, an
    event is written at once; under load, many share a round trip and a commit. Reading the
    audit log waits for the queue first (`flush`), so a client reads its own requests' events.
    While the database is unreachable events stay queued and the write is retried; past
    `max_pending` the oldest are dropped and counted (`clusterflow_audit_events_dropped_total`).
    Stopping writes what is left, for at most `stop_timeout` seconds.
    """

    def __init__(self, pool: DbPool, *, max_pending: int = 100_000, batch: int = 500) -> None:
        self.pool = pool
        self.max_pending = max_pending
        self.batch = batch
        self._queue: list[AuditEvent] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cf-audit-writer")

    def submit(self, event: AuditEvent) -> None:
        if len(self._queue) >= self.max_pending:
            del self._queue[0]
            metrics.AUDIT_EVENTS_DROPPED.inc()
            log.error("audit queue full (%d): dropped the oldest event", self.max_pending)
        self._queue.append(event)
        metrics.AUDIT_QUEUE.set(len(self._queue))
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Return once every event submitted so far is written."""
        await self._idle.wait()

    async def stop(self, stop_timeout: float = 5.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), stop_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._queue:
            log.error("stopping with %d audit events unwritten", len(self._queue))

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self.batch]
                del self._queue[: len(batch)]
                try:
                    await self._write(batch)
                except _UNAVAILABLE as err:
                    log.warning("could not write %d audit events (%s); retrying", len(batch), type(err).__name__)
                    self._queue[:0] = batch
                    overflow = len(self._queue) - self.max_pending
                    if overflow > 0:
                        del self._queue[:overflow]
                        metrics.AUDIT_EVENTS_DROPPED.inc(overflow)
                        log.error("audit queue full (%d): dropped the %d oldest events", self.max_pending, overflow)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except Exception:  # a bug must not stop every later event from being written
                    metrics.AUDIT_EVENTS_DROPPED.inc(len(batch))
                    log.exception("dropped %d audit events that could not be written", len(batch))
                finally:
                    metrics.AUDIT_QUEUE.set(len(self._queue))
                backoff = 0.1
            self._idle.set()

    async def _write(self, batch: list[AuditEvent]) -> None:
        """Write `batch`; if the database is unavailable, raise with `batch` cut to what is unwritten."""
        try:
            await record_many(self.pool, batch)
        except _UNAVAILABLE:
            raise
        except DatabaseError:
            # An event the database refuses must not hold back the others: one at a time, and
            # the refused one is dropped (retrying it would fail the same way).
            for index, event in enumerate(batch):
                try:
                    await record_many(self.pool, [event])
                except _UNAVAILABLE:
                    del batch[:index]  # written (or dropped) already: the caller requeues the rest
                    raise
                except DatabaseError:
                    metrics.AUDIT_EVENTS_DROPPED.inc()
                    log.exception("the database refused an audit event of request %s", event.request_id)


# Errors that say the database cannot be reached now, as opposed to refusing what was sent.
_UNAVAILABLE: tuple[type[Exception], ...] = (OSError, TimeoutError, *DATABASE_UNREACHABLE)


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
