"""Live event streams: a per-process hub fed by LISTEN/NOTIFY, served as SSE or WebSocket.

Shape, and why:
- Events are rows first. A notification (`records/change_listener.py`) only says "operation X has
  sequence N"; subscribers read the rows themselves, so no payload is ever an event and a lost
  notification costs a read, never an event.
- One `Topic` per operation watched in this process. It keeps a short contiguous tail of the
  latest events read from the table, so N clients following one operation cost one query per
  new batch, not N. A client behind the tail (resuming from far back) reads the table directly.
- A subscriber holds no queue: just a wake-up flag and its cursor. It asks for the next batch
  only after the previous one was written to its socket, so a slow client holds at most one
  batch and blocks nobody else (the server's send applies back-pressure to that client alone).
- Resume rule (both transports): deliver every event with `sequence > cursor`, in order, where
  the cursor is `Last-Event-ID` if sent, else `?cursor=`. Reconnecting with the last ID seen
  gives no gap and no duplicate.
- Disconnects are watched actively (not only discovered at the next write), so a client that
  leaves while the operation is quiet leaves no task behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from clusterflow import metrics
from clusterflow.api.views import event_view
from clusterflow.contracts.operations import TERMINAL_STATUSES
from clusterflow.records import operations
from clusterflow.records.db import DbPool
from clusterflow.records.errors import DatabaseError
from clusterflow.records.operations import EventRow

log = logging.getLogger(__name__)

BATCH = 100
TAIL = 256


@dataclass(frozen=True, slots=True)
class StreamEvent:
    sequence: int
    kind: str
    terminal: bool
    data: str
    """The event as JSON (an `OperationEvent`), serialized once for every subscriber."""


def _to_stream_event(row: EventRow) -> StreamEvent:
    view = event_view(row)
    terminal = view.kind == "status" and view.labels.get("status") in TERMINAL_STATUSES
    return StreamEvent(view.sequence, view.kind, terminal, view.model_dump_json())


async def _read(pool: DbPool, operation_id: str, cursor: int, limit: int) -> list[StreamEvent]:
    return [_to_stream_event(r) for r in await operations.events_after(pool, operation_id, cursor, limit)]


@dataclass(eq=False)
class Subscriber:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    recheck: bool = True
    """Read the table at the next turn even if no notification says so (start, reconnect)."""


class Topic:
    """What this process knows about one operation's event log."""

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id
        self.subscribers: set[Subscriber] = set()
        self.tail: deque[StreamEvent] = deque(maxlen=TAIL)
        self.latest = 0
        """Highest sequence known to exist (notifications and reads); a hint, never data."""
        self._fetching: asyncio.Future[None] | None = None

    def _from_tail(self, cursor: int, limit: int) -> list[StreamEvent] | None:
        if not self.tail or self.tail[-1].sequence <= cursor or cursor + 1 < self.tail[0].sequence:
            return None
        start = cursor + 1 - self.tail[0].sequence
        return list(itertools.islice(self.tail, start, start + limit))

    def _remember(self, events: list[StreamEvent]) -> None:
        if not events:
            return
        if self.tail and events[0].sequence != self.tail[-1].sequence + 1:
            self.tail.clear()
        self.tail.extend(events)
        self.latest = max(self.latest, events[-1].sequence)

    async def read_after(self, pool: DbPool, cursor: int, limit: int, *, check_table: bool) -> list[StreamEvent]:
        """Events after `cursor`: from the tail when it has them, else from the table when
        something newer is known to exist (or `check_table`), else nothing."""
        hit = self._from_tail(cursor, limit)
        if hit:
            return hit
        if cursor >= self.latest and not check_table:
            return []
        if self.tail and cursor + 1 < self.tail[0].sequence:
            return await _read(pool, self.operation_id, cursor, limit)  # far behind: not worth caching
        while self._fetching is not None:
            # Another subscriber is reading this operation's new rows: wait for it (all waiters
            # wake together, unlike a lock's one-by-one hand-off), then take them from the tail.
            await asyncio.wait({self._fetching})
            hit = self._from_tail(cursor, limit)
            if hit:
                return hit
        self._fetching = done = asyncio.get_running_loop().create_future()
        try:
            events = await _read(pool, self.operation_id, cursor, limit)
            self._remember(events)
            return events
        finally:
            self._fetching = None
            done.set_result(None)


class StreamHub:
    """Wakes the subscribers of an operation when the listener hears of a new event."""

    def __init__(self) -> None:
        self.topics: dict[str, Topic] = {}
        self.closing = False
        self._loop = asyncio.get_running_loop()

    def notify(self, operation_id: str, sequence: int) -> None:
        topic = self.topics.get(operation_id)
        if topic is None:
            return
        topic.latest = max(topic.latest, sequence)
        for sub in topic.subscribers:
            sub.wake.set()

    def resync(self) -> None:
        """Notifications may have been lost (the listener reconnected): everyone re-reads."""
        for topic in self.topics.values():
            for sub in topic.subscribers:
                sub.recheck = True
                sub.wake.set()

    def close(self) -> None:
        """End every stream (shutdown); SSE clients reconnect elsewhere with Last-Event-ID."""
        self.closing = True
        self.resync()

    def close_threadsafe(self) -> None:
        """`close` from a signal handler or another thread."""
        self._loop.call_soon_threadsafe(self.close)

    @property
    def subscriber_count(self) -> int:
        return sum(len(t.subscribers) for t in self.topics.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, operation_id: str) -> AsyncIterator[tuple[Topic, Subscriber]]:
        # Registered before the first read, so no notification can fall between the two.
        topic = self.topics.get(operation_id)
        if topic is None:
            topic = self.topics[operation_id] = Topic(operation_id)
        sub = Subscriber()
        topic.subscribers.add(sub)
        try:
            yield topic, sub
        finally:
            topic.subscribers.discard(sub)
            if not topic.subscribers and self.topics.get(operation_id) is topic:
                del self.topics[operation_id]


@dataclass(frozen=True)
class StreamRequest:
    operation_id: str
    cursor: int
    follow: bool
    until_terminal: bool
    terminal_at_start: bool
    """The operation was already terminal when the stream was authorized: its log is complete."""
    transport: str = "sse"
    """`sse` or `websocket`, for the subscriber gauge."""


async def stream_events(
    hub: StreamHub, pool: DbPool, req: StreamRequest, keepalive: float
) -> AsyncGenerator[StreamEvent | None, None]:
    """Every event after the cursor, in order; `None` is a keep-alive tick while idle."""
    cursor = req.cursor
    with metrics.stream_subscriber(req.transport):
        async for item in _follow(hub, pool, req, keepalive, cursor):
            yield item


async def _follow(
    hub: StreamHub, pool: DbPool, req: StreamRequest, keepalive: float, cursor: int
) -> AsyncGenerator[StreamEvent | None, None]:
    async with hub.subscribe(req.operation_id) as (topic, sub):
        while not hub.closing:
            sub.wake.clear()
            check_table, sub.recheck = sub.recheck or not req.follow, False
            batch = await topic.read_after(pool, cursor, BATCH, check_table=check_table)
            for event in batch:
                yield event
                cursor = event.sequence
                if req.until_terminal and event.terminal:
                    return
            if len(batch) == BATCH:
                sub.recheck = True  # a full batch: there may be more in the table
            if batch:
                continue
            if not req.follow or (req.terminal_at_start and req.until_terminal):
                return
            try:
                async with asyncio.timeout(keepalive):  # no task per wait, unlike wait_for
                    await sub.wake.wait()
            except TimeoutError:
                yield None


def parse_last_event_id(value: str | None) -> int | None:
    """`Last-Event-ID` as a cursor; ValueError if it is not a sequence number we issued."""
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    # ASCII only: str.isdigit() also accepts digits int() cannot read ("²") and other scripts'.
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError("Last-Event-ID must be the sequence number of an event (ASCII digits)")
    return int(text)


# --- Server-sent events ------------------------------------------------------------------


def sse_frame(event: StreamEvent) -> bytes:
    return f"id: {event.sequence}\nevent: {event.kind}\ndata: {event.data}\n\n".encode()


KEEPALIVE_FRAME = b": keep-alive\n\n"


class EventStreamResponse(Response):
    """A `text/event-stream` ASGI response that stops its producer as soon as the client leaves.

    (Starlette's StreamingResponse may notice a disconnect only at its next write, which for a
    quiet operation is the next keep-alive.)
    """

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncGenerator[bytes, None]) -> None:
        # Like StreamingResponse: no body, hence no content-length.
        self.frames = frames
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})

        async def produce() -> None:
            try:
                async with contextlib.aclosing(self.frames) as frames:  # its cleanup runs now, not at GC
                    async for frame in frames:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
            except (DatabaseError, OSError, TimeoutError):
                # The database went away mid-stream: end the stream; the client resumes.
                log.warning("event stream ended early: database unavailable", exc_info=True)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        await _first_of(produce, watch)


async def _first_of(*functions: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run until the first finishes; cancel and await the rest (no task outlives the call)."""
    tasks = [asyncio.create_task(f()) for f in functions]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        exc = results[tasks.index(task)]
        if isinstance(exc, BaseException) and not isinstance(
            exc, asyncio.CancelledError | OSError | WebSocketDisconnect
        ):
            raise exc


async def sse_frames(
    hub: StreamHub, pool: DbPool, req: StreamRequest, *, keepalive: float, retry_ms: int
) -> AsyncGenerator[bytes, None]:
    yield f"retry: {retry_ms}\n: operation {req.operation_id} after {req.cursor}\n\n".encode()
    async with contextlib.aclosing(stream_events(hub, pool, req, keepalive)) as events:
        async for event in events:
            yield KEEPALIVE_FRAME if event is None else sse_frame(event)


# --- WebSocket --------------------------------------------------------------------------

WS_AUTH_TIMEOUT = 10.0


def ws_event_message(event: StreamEvent) -> str:
    return f'{{"type":"event","id":{event.sequence},"event":"{event.kind}","data":{event.data}}}'


async def ws_close_with_error(websocket: WebSocket, status: int, code: str, message: str) -> None:
    """Errors after the upgrade: one `error` message, then close code 4000 + HTTP status."""
    if websocket.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.send_text(
                json.dumps({"type": "error", "status": status, "error": {"code": code}, "message": message})
            )
            await websocket.close(code=4000 + status, reason=code)


async def ws_first_message_key(websocket: WebSocket) -> str | None:
    """The key from a first `{"type": "auth", "apiKey": "..."}` message (browsers cannot set
    headers on a WebSocket, and keys never go in URLs)."""
    try:
        message = await asyncio.wait_for(websocket.receive_text(), WS_AUTH_TIMEOUT)
        body = json.loads(message)
    except (TimeoutError, ValueError, WebSocketDisconnect, KeyError):
        return None
    if isinstance(body, dict) and body.get("type") == "auth" and isinstance(body.get("apiKey"), str):
        return str(body["apiKey"])
    return None


async def ws_stream(websocket: WebSocket, hub: StreamHub, pool: DbPool, req: StreamRequest, keepalive: float) -> None:
    """Send events until the stream ends (then an `end` message and close 1000) or the client
    leaves (then the producer is cancelled at once)."""

    async def produce() -> None:
        try:
            async with contextlib.aclosing(stream_events(hub, pool, req, keepalive)) as events:
                async for event in events:
                    await websocket.send_text('{"type":"keepalive"}' if event is None else ws_event_message(event))
        except (DatabaseError, TimeoutError):
            log.warning("event stream ended early: database unavailable", exc_info=True)
            await websocket.close(code=1011, reason="database unavailable; reconnect with Last-Event-ID")
            return
        if hub.closing:  # server restart: the client should reconnect and resume
            await websocket.close(code=1012, reason="server restarting")
            return
        await websocket.send_text(json.dumps({"type": "end", "operationId": req.operation_id}))
        await websocket.close(code=1000)

    async def watch() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    await _first_of(produce, watch)
