"""The simulator's waits, which notice a cancel within about a second.

Temporal tells an activity it was cancelled only in the answer to a heartbeat, and the SDK sends
`activity.heartbeat()` to the server at most every 80% of the heartbeat timeout (24 s with the
default 30 s), so a cancel of a simulated phase of a few seconds waited for the phase to end.
Cloud phases take minutes and can afford that throttle (each heartbeat is a write in Temporal);
the simulator, which `make run` and the console demonstrate cancels with, cannot.

So while it waits, the simulator also asks the server directly (`RecordActivityTaskHeartbeat`
through the worker's client, the call the SDK's own heartbeat makes) once per half second of
waiting. When the answer says a cancel was requested, it reports the activity cancelled
(`RespondActivityTaskCanceled`, as the SDK does after its own heartbeat learns of a cancel), so
the workflow sees the activity end cancelled (`is_cancelled_exception`) and runs its cleanup
exactly as after a cancel the SDK delivered; then it stops the phase with a benign error, whose
completion the server ignores (the activity is already closed; the SDK logs one warning,
"Activity not found on completion"). A cancel the SDK delivers first
still arrives as `asyncio.CancelledError`, as before. Short waits (the tests' 50 ms
phases) add up before anything is asked, so they cost no extra call.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from weakref import WeakKeyDictionary

from temporalio import activity
from temporalio.client import AsyncActivityCancelledError
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError

from clusterflow.activities.providers.phases import PhaseReporter

log = logging.getLogger(__name__)

SLICE_SECONDS = 0.5
"""Longest sleep between two heartbeats, and the waiting between two questions to the server."""

_waited: WeakKeyDictionary[PhaseReporter, float] = WeakKeyDictionary()
"""Seconds each running phase has waited since it last asked the server."""
_RPC_TIMEOUT = timedelta(seconds=2)


async def wait(reporter: PhaseReporter, seconds: float, detail: str) -> None:
    """Wait `seconds`, heartbeating every slice; once the server says this activity's cancel was
    requested, report it cancelled and stop."""
    remaining = seconds
    while remaining > 0:
        step = min(remaining, SLICE_SECONDS)
        await reporter.heartbeat_while(step, detail)
        remaining -= step
        _waited[reporter] = _waited.get(reporter, 0.0) + step
        if _waited[reporter] >= SLICE_SECONDS:
            _waited[reporter] = 0.0
            await _raise_if_cancel_requested(detail)


async def _raise_if_cancel_requested(detail: str) -> None:
    info = activity.info()
    handle = activity.client().get_async_activity_handle(task_token=info.task_token)
    try:
        await handle.heartbeat(detail, rpc_timeout=_RPC_TIMEOUT)
    except AsyncActivityCancelledError as err:
        if err.details is None or not err.details.cancel_requested:
            return  # paused or reset: the SDK's own heartbeat handles those
        await handle.report_cancellation(detail, rpc_timeout=_RPC_TIMEOUT)
        raise ApplicationError(
            "cancel requested: stopped while waiting",
            type="CANCELLED",
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        ) from err
    except RPCError as err:  # the SDK's own heartbeats still run; the next slice asks again
        log.debug("heartbeat for %s not sent: %s", info.activity_type, err)
