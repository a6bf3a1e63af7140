"""What every provider phase activity does around its own work: report, classify, retry.

A provider implements a phase as a coroutine that receives a `PhaseReporter`. The runner
writes the phase's started/completed events, turns `ProviderError` into Temporal's
`ApplicationError` (permanent errors non-retryable, with a stable code), and makes each retry
visible as an event. Event keys include the run, so a retry is a new fact, while a repeated
report of the same fact is a no-op. A run after one lost with its worker says the phase is
re-checked: it may find the work done.

A phase's events are written in batches: those reported with no wait in between share one
transaction. Pending events are written before every wait (`heartbeat_while`), at most
`FLUSH_AFTER_SECONDS` after they were reported, and when the phase ends however it ends. A
worker that dies in between loses only events its retry reports again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.contracts.operations import ErrorCode, EventInput
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult
from clusterflow.records import operations
from clusterflow.records.db import DbPool, ping
from clusterflow.records.errors import ConnectionUnusable, DatabaseError, database_unavailable


class ProviderError(Exception):
    """A classified failure: `code` is stable, `retryable` says whether trying again may help."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


FLUSH_AFTER_SECONDS = 0.1


class PhaseReporter:
    def __init__(self, pool: DbPool, inp: PhaseInput) -> None:
        self.pool = pool
        self.inp = inp
        if inp.run:  # the workflow counts the runs (workflows/steps.py)
            self.attempt, self.max_attempts = inp.attempt, inp.max_attempts
            self.run, self.recheck = inp.run, inp.recheck
        else:  # an input from a history that predates it: Temporal's retry policy counts
            info = activity.info()
            self.attempt = self.run = info.attempt
            self.max_attempts = info.retry_policy.maximum_attempts if info.retry_policy else 0
            self.recheck = False
        self._pending: list[EventInput] = []
        self._writing = asyncio.Lock()  # keeps batches in the order they were reported
        self._timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()

    def progress_at(self, fraction: float) -> int:
        span = self.inp.progress_to - self.inp.progress_from
        return self.inp.progress_from + int(span * min(max(fraction, 0.0), 1.0))

    @property
    def label(self) -> str:
        """How events name the phase: `NETWORK`, or `NETWORK cleanup` in a cleanup pass."""
        return f"{self.inp.phase} {self.inp.stage}" if self.inp.stage else self.inp.phase

    async def event(
        self, key: str, message: str, *, fraction: float | None = None, level: str = "INFO", kind: str = "progress"
    ) -> None:
        stage = f"{self.inp.stage}:" if self.inp.stage else ""
        self._pending.append(
            EventInput(
                self.inp.operation_id,
                f"{stage}{self.inp.phase}/{key}",
                message,
                kind=kind,
                level=level,
                phase=self.inp.phase,
                # A cleanup or rollback pass does not move the operation's progress.
                progress_percentage=None if fraction is None or self.inp.stage else self.progress_at(fraction),
                labels={"attempt": str(self.attempt)},
            )
        )
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER_SECONDS, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self._flush_quietly())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _flush_quietly(self) -> None:
        # A failed write keeps its events pending: the next flush (at the latest the phase's
        # last) writes them or fails the attempt.
        with contextlib.suppress(OSError, DatabaseError, ConnectionUnusable):
            await self.flush()

    async def flush(self) -> None:
        """Write the events reported so far."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._writing:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await operations.append_events(self.pool, batch)
            except BaseException:
                self._pending[:0] = batch
                raise

    async def heartbeat_while(self, seconds: float, detail: str) -> None:
        """Wait, heartbeating, so cancellation and worker loss are noticed within a heartbeat.

        No wait, no heartbeat: each one is a write in Temporal, and a step that does not wait
        ends (or reaches its next wait) without giving a cancel anything to interrupt.
        """
        if seconds <= 0:
            return
        await self.flush()
        remaining = seconds
        while remaining > 0:
            activity.heartbeat(detail)
            step = min(remaining, 0.5)
            await asyncio.sleep(step)
            remaining -= step
        activity.heartbeat(detail)


PhaseBody = Callable[[PhaseReporter], Awaitable[PhaseResult]]


async def run_phase(pool: DbPool, inp: PhaseInput, body: PhaseBody) -> PhaseResult:
    try:
        return await _run_phase(pool, inp, body)
    except ApplicationError:
        raise
    except Exception as err:
        # The operation's database away is our fault, not the cloud's: the workflow re-runs the
        # phase without spending an attempt. Told apart from a cloud endpoint that cannot be
        # reached (the same socket errors) by asking the database itself.
        if not database_unavailable(err) or await _database_answers(pool):
            raise
        raise ApplicationError(
            f"the operation's database is unavailable ({type(err).__name__})", type=ErrorCode.DATABASE_UNAVAILABLE
        ) from err


async def _database_answers(pool: DbPool) -> bool:
    try:
        async with asyncio.timeout(2):
            await ping(pool)
    except Exception:
        return False
    return True


async def _run_phase(pool: DbPool, inp: PhaseInput, body: PhaseBody) -> PhaseResult:
    reporter = PhaseReporter(pool, inp)
    label = reporter.label
    if reporter.run == 1:
        await reporter.event("started", f"{label} started", fraction=0.0, kind="phase")
    elif reporter.recheck:
        # The run before was lost with its worker (or its database), perhaps after its work was
        # done: this one finds what exists, so it neither counts as an attempt nor reads as a retry.
        after = inp.recheck_reason or "a worker restart"
        await reporter.event(f"attempt-{reporter.run}/started", f"re-checking {label} after {after}", kind="phase")
    else:
        await reporter.event(
            f"attempt-{reporter.run}/started",
            f"retrying {label} (attempt {reporter.attempt} of {reporter.max_attempts or 'unlimited'})",
            fraction=0.0,
            level="WARN",
            kind="phase",
        )
    try:
        result = await body(reporter)
    except ProviderError as err:
        last_attempt = reporter.max_attempts and reporter.attempt >= reporter.max_attempts
        will_retry = err.retryable and not last_attempt
        await reporter.event(
            f"attempt-{reporter.run}/failed",
            f"{label} attempt {reporter.attempt} failed: {err.message}" + ("; will retry" if will_retry else ""),
            level="WARN" if will_retry else "ERROR",
            kind="log",
        )
        await reporter.flush()
        raise ApplicationError(err.message, type=err.code, non_retryable=not err.retryable) from err
    except BaseException:
        # Cancelled, or an unclassified failure: what was reported still happened.
        with contextlib.suppress(Exception):
            await reporter.flush()
        raise
    await reporter.event("completed", f"{label} completed", fraction=1.0, kind="phase")
    await reporter.flush()
    return result
