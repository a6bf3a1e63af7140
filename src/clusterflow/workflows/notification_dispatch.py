"""NotificationDispatch: deliver one notification event to every channel subscribed to its topic.

Why an outbox, and a workflow per event, rather than notification steps inside the operation
workflows:
- The event is written to `notification_outbox` in the same transaction as the status change
  it announces (`records.operations.begin` and `finish`, `records.decisions`), so a notification
  exists exactly when the change committed: none is lost if a worker dies after the commit, and
  none is sent for a change that rolled back.
- Topics that have no workflow at all (an agent or a cloud account disconnecting, seen by the
  API or the agent channel) use the same `records.notifications.enqueue` call.
- The operation workflows stay as they are: adding activities to them would change their
  command sequence and break the replay of workflows already in flight.
Each worker's dispatcher (`worker/notifications.py`) claims outbox rows with SKIP LOCKED and
starts this workflow with ID `notify-<event id>` (a duplicate start is refused, so an event is
dispatched once). The workflow does no I/O: it asks `notify.targets` which channels to reach,
then runs `notify.deliver` per channel with Temporal's retries and exponential backoff; each
attempt writes the delivery log. A channel that still fails after its last attempt is reported
in the result and the log, and never fails the other channels.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.notifications import (
        DELIVER_ACTIVITY,
        TARGETS_ACTIVITY,
        DeliveryResult,
        DeliveryTarget,
        DispatchInput,
        DispatchResult,
    )


@workflow.defn(name="NotificationDispatch")
class NotificationDispatchWorkflow:
    @workflow.run
    async def run(self, inp: DispatchInput) -> DispatchResult:
        targets: list[DeliveryTarget] = await workflow.execute_activity(
            TARGETS_ACTIVITY,
            inp.event_id,
            result_type=list[DeliveryTarget],
            start_to_close_timeout=timedelta(seconds=inp.timeout_seconds),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=inp.retry_initial_seconds),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=inp.retry_max_seconds),
            maximum_attempts=inp.max_attempts,
        )

        async def deliver(target: DeliveryTarget) -> DeliveryResult:
            target.max_attempts = inp.max_attempts
            try:
                result: DeliveryResult = await workflow.execute_activity(
                    DELIVER_ACTIVITY,
                    target,
                    result_type=DeliveryResult,
                    start_to_close_timeout=timedelta(seconds=inp.timeout_seconds),
                    retry_policy=retry,
                )
                return result
            except ActivityError as err:
                return DeliveryResult(target.channel, False, str(err.cause or err))

        results = await asyncio.gather(*(deliver(t) for t in targets))
        out = DispatchResult(inp.event_id)
        for r in results:
            (out.delivered if r.delivered else out.failed).append(r.channel)
        return out
