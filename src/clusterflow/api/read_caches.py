"""Per-process caches for the reads nearly every request makes: its key, the operation it polls,
and (for enqueues) its organization's approval policy.

A client polling `GET /v1/operations/{id}` would otherwise cost two or three PostgreSQL round
trips per request (the key, the record, its recent events) for a record that changes a few times
a second at most. The caches are dropped by the notifications this process already LISTENs to
(`records/change_listener.py`): PostgreSQL announces every change to an operation, every revocation,
expiry or role change of a key and every change of an approval policy, at commit. So a cached
answer is never older than the notification delay (milliseconds), and:

- while the LISTEN connection is down, nothing is read from or written to a cache, and when it
  is back the caches are emptied (notifications sent meanwhile are gone);
- a read that was in flight when its entry was dropped does not store what it read, since that
  may predate the change (`Reading` tracks this per key);
- entries are bounded in number (least recently used go first) and, for keys, in age;
- a write answered by this process empties the operation cache before the answer leaves
  (`WriteFenceMiddleware`), so a client sees its own change on its next read even if the
  notification has not arrived yet. Through another API process, a change is seen once that
  process has the notification.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clusterflow.records.organizations import Principal

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class NotifiedCache(Generic[K, V]):
    """A bounded map whose entries are dropped by notifications; off when `max_entries` is 0."""

    def __init__(self, max_entries: int, max_age_seconds: float | None, listening: Callable[[], bool]) -> None:
        self.max_entries = max_entries
        self.max_age_seconds = max_age_seconds
        self._listening = listening
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._in_flight: dict[K, int] = {}  # reads under way per key
        self._dropped: dict[K, int] = {}  # drops of a key seen while reads of it were under way
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self._listening()

    def get(self, key: K) -> V | None:
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        stored_at, value = entry
        if self.max_age_seconds is not None and time.monotonic() - stored_at > self.max_age_seconds:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def reading(self, key: K) -> Reading[K, V]:
        """Start a read from the database whose result may be stored with `Reading.store`."""
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return Reading(self, key, self._dropped.get(key, 0))

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)
        if key in self._in_flight:
            self._dropped[key] = self._dropped.get(key, 0) + 1

    def clear(self) -> None:
        self._entries.clear()
        for key in self._in_flight:
            self._dropped[key] = self._dropped.get(key, 0) + 1

    def __len__(self) -> int:
        return len(self._entries)

    def _finish(self, key: K, drops_at_start: int, value: V | None) -> None:
        if value is not None and self.enabled and self._dropped.get(key, 0) == drops_at_start:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        remaining = self._in_flight[key] - 1
        if remaining:
            self._in_flight[key] = remaining
        else:
            del self._in_flight[key]
            self._dropped.pop(key, None)


class Reading(Generic[K, V]):
    """One read of a key from the database: `with cache.reading(k) as read: ... read.store(v)`."""

    def __init__(self, cache: NotifiedCache[K, V], key: K, drops_at_start: int) -> None:
        self._cache, self._key, self._drops_at_start = cache, key, drops_at_start
        self._value: V | None = None

    def store(self, value: V) -> None:
        self._value = value

    def __enter__(self) -> Reading[K, V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cache._finish(self._key, self._drops_at_start, None if exc[0] else self._value)


@dataclass(frozen=True)
class CachedOperation:
    organization_id: str
    data_json: bytes
    """The `data` member of the answer: the Operation document, encoded."""


class ReadCaches:
    """The API process's caches, wired to its listener in the app's lifespan."""

    def __init__(self, key_max_age_seconds: float, operation_entries: int, listening: Callable[[], bool]) -> None:
        # Keys are few; their entries also age out, bounding how long a key could outlive its
        # row if the database were changed behind the triggers' back. Keyed by the key's hash.
        self.keys: NotifiedCache[bytes, Principal] = NotifiedCache(
            10_000 if key_max_age_seconds > 0 else 0, key_max_age_seconds, listening
        )
        self.operations: NotifiedCache[str, CachedOperation] = NotifiedCache(operation_entries, None, listening)
        # Approval policies by organization; aged like keys, since they also decide who may act.
        self.approval_policies: NotifiedCache[str, dict[str, Any]] = NotifiedCache(
            10_000 if key_max_age_seconds > 0 else 0, key_max_age_seconds, listening
        )

    def operation_changed(self, operation_id: str, _sequence: int) -> None:
        self.operations.drop(operation_id)

    def api_key_changed(self, _key_id: str) -> None:
        # Revocations are rare: drop every key rather than keep an index from key ID to entry.
        self.keys.clear()

    def approval_policy_changed(self, organization_id: str) -> None:
        self.approval_policies.drop(organization_id)

    def resync(self) -> None:
        self.keys.clear()
        self.operations.clear()
        self.approval_policies.clear()


_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_REFUSED_BEFORE_ANY_ROUTE = frozenset({401, 403, 429})


class WriteFenceMiddleware:
    """Empties the operation cache when a write request's answer starts, before the client has it.

    The write may have changed operations (a cancel, or a decision the worker has recorded), and
    the notification of that change may still be on its way to this process. Requests refused
    before any route ran (401, 403, 429) changed nothing and leave the cache alone, so they
    cannot be used to keep it empty.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        caches: ReadCaches | None = getattr(scope["app"].state, "caches", None)

        async def fenced_send(message: Message) -> None:
            if (
                message["type"] == "http.response.start"
                and caches is not None
                and message["status"] not in _REFUSED_BEFORE_ANY_ROUTE
            ):
                caches.operations.clear()
            await send(message)

        await self.app(scope, receive, fenced_send)
