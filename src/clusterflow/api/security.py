"""Per-process guards around authentication: rate limits and key-usage tracking.

Rate limits are token buckets per key and per kind of request (writes, deletes, reads), kept
in memory so a request costs no database write. To hold across API processes, each process
registers itself in `api_instances` with a heartbeat and gives every key 1/N of the configured
rate, N being the live processes: two processes never double a key's allowance. (With uneven
load a client may be limited slightly early; it is never allowed more.)

`lastUsedAt` is tracked the same way: in memory, flushed in one statement every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from clusterflow.ids import new_id
from clusterflow.records import api_instances
from clusterflow.records.db import DbPool
from clusterflow.records.organizations import touch_keys
from clusterflow.settings import Settings

log = logging.getLogger(__name__)


def rate_class(method: str) -> str:
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    return "delete" if method == "DELETE" else "write"


@dataclass(frozen=True)
class Decision:
    retry_after: float | None  # None: allowed
    limit: int  # requests per second this process grants the key for this kind of request
    remaining: int
    reset_seconds: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(max(self.reset_seconds, 0)).encode()),
        ]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.rates = {
            "write": settings.rate_limit_writes_per_second,
            "delete": settings.rate_limit_deletes_per_second,
            "read": settings.rate_limit_reads_per_second,
        }
        self.instances = 1
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def check(self, key_id: str, method: str) -> float | None:
        """Take a token; None if allowed, else the seconds until the next one."""
        return self.decide(key_id, method).retry_after

    def decide(self, key_id: str, method: str) -> Decision:
        """Take a token if one is left; the decision carries what the RateLimit headers say."""
        kind = rate_class(method)
        rate = max(self.rates[kind] / max(self.instances, 1), 0.001)
        capacity = max(rate, 1.0)
        now = time.monotonic()
        bucket = self._buckets.get((key_id, kind))
        if bucket is None:
            bucket = self._buckets[(key_id, kind)] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        limit = max(1, math.floor(capacity))
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return Decision(None, limit, math.floor(bucket.tokens), math.ceil((capacity - bucket.tokens) / rate))
        wait = (1 - bucket.tokens) / rate
        return Decision(wait, limit, 0, math.ceil(wait))

    def forget_idle(self, older_than: float = 60.0) -> None:
        cutoff = time.monotonic() - older_than
        for key in [k for k, b in self._buckets.items() if b.updated < cutoff]:
            del self._buckets[key]


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class ApiGuards:
    """The rate limiter and key-usage tracker of one API process, with their background loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings)
        self.instance_id = new_id("api")
        self._last_used: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._pool: DbPool | None = None

    def touch(self, key_id: str) -> None:
        self._last_used[key_id] = datetime.now(UTC)

    async def start(self, pool: DbPool) -> None:
        self._pool = pool
        await self._heartbeat()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pool is not None:
            with contextlib.suppress(Exception):  # best effort on the way out
                await self._flush()
                await api_instances.deregister(self._pool, self.instance_id)

    async def _flush(self) -> None:
        pending, self._last_used = self._last_used, {}
        assert self._pool is not None
        await touch_keys(self._pool, pending)

    async def _heartbeat(self) -> None:
        assert self._pool is not None
        interval = self.settings.instance_heartbeat_seconds
        # A process that missed three beats is no longer counted (api_instances.heartbeat).
        self.limiter.instances = await api_instances.heartbeat(self._pool, self.instance_id, interval * 3)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.instance_heartbeat_seconds)
            try:
                await self._heartbeat()
                await self._flush()
                self.limiter.forget_idle()
            except Exception:  # the next round retries; a missed beat only delays accounting
                log.exception("API guard loop failed")
