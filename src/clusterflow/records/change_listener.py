"""One LISTEN connection per process, turning notifications into wake-ups and cache drops.

`append_operation_event` (migration 0001) sends `pg_notify('cf_operation_events',
'<operation id>:<sequence>')` in the transaction that writes the row, so the notification is
delivered only after the row is committed and visible; an update of an operation that writes no
event notifies the same way (migration 0009). The payload carries IDs only: listeners treat it as
"operation X has changed" and read the rows themselves, so a payload is never the source of an
event and a lost one costs a read, not an event. `cf_api_keys` carries the ID of a key whose
revocation, expiry or role changed (migration 0009), for the API's key cache.

The connection is dedicated (a pooled connection would lose its LISTEN when released). If it
drops, the listener reconnects with backoff and then calls `on_reconnect`, because
notifications sent while it was away are gone: subscribers must re-read from the table. An
outage is logged once when the connection is lost and once when it is back, not per retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from clusterflow.records.db import connect, connection_broken
from clusterflow.records.errors import database_unavailable

log = logging.getLogger(__name__)

CHANNEL = "cf_operation_events"
API_KEY_CHANNEL = "cf_api_keys"
APPROVAL_POLICY_CHANNEL = "cf_approval_policies"


def parse_payload(payload: str) -> tuple[str, int] | None:
    """`<operation id>:<sequence>` -> (operation id, sequence); None for anything else."""
    operation_id, sep, sequence = payload.rpartition(":")
    if not sep or not operation_id or not sequence.isdigit():
        return None
    return operation_id, int(sequence)


class EventListener:
    """LISTENs on `CHANNEL` and calls `on_event(operation_id, sequence)` for each notification,
    and on each channel of `others` its callback with the payload.

    Callbacks run on the event loop and must not block: they only set flags and drop entries.
    """

    def __init__(
        self,
        dsn: str,
        on_event: Callable[[str, int], None],
        on_reconnect: Callable[[], None],
        *,
        others: dict[str, Callable[[str], None]] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._on_event = on_event
        self._others = others or {}
        self._on_reconnect = on_reconnect
        self._max_backoff = max_backoff
        self._conn: asyncpg.Connection[Any] | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    @property
    def listening(self) -> bool:
        """True while notifications are being received: nothing sent now can be missed."""
        return self._conn is not None and not self._lost.is_set()

    async def start(self) -> None:
        """Connect and LISTEN (raising if the database is unreachable now), then keep it up."""
        await self._connect()
        self._task = asyncio.create_task(self._supervise(), name="cf-event-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    async def _connect(self) -> None:
        conn = await connect(self._dsn)
        conn.add_termination_listener(self._terminated)
        await conn.add_listener(CHANNEL, self._notified)
        for channel in self._others:
            await conn.add_listener(channel, self._other_notified)
        self._conn = conn
        self._lost.clear()
        self.connected.set()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    def _terminated(self, _conn: object) -> None:
        self._lost.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        parsed = parse_payload(str(payload))
        if parsed is None:
            log.warning("ignoring a malformed %s notification", CHANNEL)
            return
        self._on_event(*parsed)

    def _other_notified(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        self._others[channel](str(payload))

    async def _supervise(self) -> None:
        while True:
            await self._lost.wait()
            log.warning("the LISTEN connection was lost; reconnecting")
            await self._close()
            backoff, failures, lost_at = 0.1, 0, time.monotonic()
            while True:
                try:
                    await self._connect()
                    break
                except Exception as err:  # never give up: the process has no other LISTEN
                    failures += 1
                    # The database being away was said once, above; anything else each time.
                    level = logging.DEBUG if database_unavailable(err) or connection_broken(err) else logging.WARNING
                    log.log(level, "LISTEN reconnect failed (%s); retrying in %.1fs", type(err).__name__, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
            log.warning(
                "LISTEN connection restored after %.1fs (%d failed attempts)", time.monotonic() - lost_at, failures
            )
            self._on_reconnect()
