"""A dependency that is down is a 503 with `Retry-After`, decided in one place for every route.

A client must tell "retry later" (503, `Retry-After`, a stable code: `DATABASE_UNAVAILABLE`,
`ORCHESTRATOR_UNAVAILABLE`) from "this request is wrong" (4xx) and from a bug (500). Routes,
dependencies and caches do not catch driver errors: whatever asyncpg or the Temporal client
raises reaches the app's exception handlers (`api/errors.py`), which ask `classify` here. Calls
to Temporal go through `api/orchestrator.py`, which bounds them and raises
`DependencyUnavailable` itself.

An outage is logged once, as a warning without a traceback, when the first request meets it;
a probe in the background then asks the service every second and logs once more when it
answers again. The API's background loops (the guard heartbeat, the audit writer, the LISTEN
connection, asyncpg's pool refilling its floor) log each failed round with its traceback; a
filter on their loggers (`quiet_background_loops`) turns a round that failed because a
dependency is down into that same one warning per outage. Every refused request is counted in
`clusterflow_dependency_unavailable_total{dependency}`, so the rate of 503s is visible without
a log line per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum

from prometheus_client import Counter
from temporalio.client import RPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from clusterflow.contracts.operations import ErrorCode
from clusterflow.records.db import connection_broken
from clusterflow.records.errors import database_unavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
PROBE_INTERVAL_SECONDS = 1.0

UNAVAILABLE_TOTAL = Counter(
    "clusterflow_dependency_unavailable_total",
    "Requests answered 503 because a dependency (database, temporal) was unavailable",
    ["dependency"],
)


class Dependency(StrEnum):
    DATABASE = "database"
    TEMPORAL = "temporal"


CODES = {Dependency.DATABASE: ErrorCode.DATABASE_UNAVAILABLE, Dependency.TEMPORAL: ErrorCode.ORCHESTRATOR_UNAVAILABLE}
MESSAGES = {
    Dependency.DATABASE: "the database is unavailable; nothing was changed, retry later",
    Dependency.TEMPORAL: "the workflow engine is unavailable; nothing was enqueued or changed, retry later",
}

# Temporal's answers that say "not now" rather than "not this": the server or the connection to
# it is down, overloaded, or did not answer in time.
_TEMPORAL_TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)


class DependencyUnavailable(Exception):
    """Raised where a dependency is known to be unavailable (a bounded call that ran out)."""

    def __init__(self, dependency: Dependency, reason: str) -> None:
        super().__init__(f"{dependency} unavailable: {reason}")
        self.dependency = dependency
        self.reason = reason


def temporal_unavailable(err: BaseException) -> bool:
    if isinstance(err, RPCError):
        # gRPC says RESOURCE_EXHAUSTED for a message over its size limit too: that never passes.
        message = err.message.lower()
        too_large = err.status == RPCStatusCode.RESOURCE_EXHAUSTED and (
            "too large" in message or "larger than max" in message
        )
        return err.status in _TEMPORAL_TRANSIENT and not too_large
    if isinstance(err, RPCTimeoutOrCancelledError):
        return True
    # The lazy client's first call, while the server cannot be reached.
    return isinstance(err, RuntimeError) and str(err).startswith("Failed client connect")


def classify(err: BaseException) -> Dependency | None:
    """Which dependency `err` says is unavailable, or None for any other failure."""
    if isinstance(err, DependencyUnavailable):
        return err.dependency
    if temporal_unavailable(err):
        return Dependency.TEMPORAL
    # Temporal's errors are classified first: every other socket the API opens is PostgreSQL's.
    if database_unavailable(err) or connection_broken(err):
        return Dependency.DATABASE
    return None


class Outages:
    """One per app: which dependencies are down, told once each way, probed until they are back."""

    def __init__(self, probes: dict[Dependency, Callable[[], Awaitable[object]]]) -> None:
        self._probes = probes
        self._watching: dict[Dependency, asyncio.Task[None]] = {}

    def is_down(self, dependency: Dependency) -> bool:
        return dependency in self._watching

    def refused(self, dependency: Dependency, err: BaseException) -> None:
        UNAVAILABLE_TOTAL.labels(dependency.value).inc()
        self.noticed(dependency, err)

    def noticed(self, dependency: Dependency, err: BaseException) -> None:
        """The outage's one warning and its recovery probe, whoever meets it first."""
        if dependency in self._watching:
            return
        log.warning(
            "%s unavailable (%s: %s); answering 503 %s until it is back",
            dependency,
            type(err).__name__,
            str(err)[:200],
            CODES[dependency],
        )
        self._watching[dependency] = asyncio.get_running_loop().create_task(self._watch(dependency))

    async def _watch(self, dependency: Dependency) -> None:
        probe = self._probes.get(dependency)
        while probe is not None:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            try:
                await asyncio.wait_for(probe(), PROBE_INTERVAL_SECONDS * 2)
                break
            except Exception as err:  # still down: the outage was reported when it began
                log.debug("%s still unavailable: %s", dependency, type(err).__name__)
        log.warning("%s available again", dependency)
        self._watching.pop(dependency, None)

    async def close(self) -> None:
        tasks = list(self._watching.values())
        self._watching.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# Loggers of loops that run beside the requests, each failing once a round while a dependency is down.
BACKGROUND_LOGGERS = (
    "clusterflow.api.security",
    "clusterflow.api.audit_log",
    "clusterflow.records.change_listener",
    "asyncpg.pool",
)


class _QuietOutages(logging.Filter):
    """Drops a record whose exception says a dependency is unavailable, after telling `Outages`
    (one warning per outage, one on recovery); lets everything else through."""

    def __init__(self, outages: Outages) -> None:
        super().__init__()
        self._outages = outages

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        dependency = classify(err) if err is not None else None
        if err is None or dependency is None:
            return True
        with contextlib.suppress(RuntimeError):  # logged off the event loop: no probe, still quiet
            self._outages.noticed(dependency, err)
        return False


def quiet_background_loops(outages: Outages) -> Callable[[], None]:
    """While the app runs, its background loops report an outage through `outages`; returns
    the undo, for the app's shutdown."""
    quiet = _QuietOutages(outages)
    loggers = [logging.getLogger(name) for name in BACKGROUND_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)

    def undo() -> None:
        for logger in loggers:
            logger.removeFilter(quiet)

    return undo
