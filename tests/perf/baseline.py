"""The bare-Temporal baselines of `bench_control_plane.py`: what Temporal alone costs.

`BareOperation` runs the same number of activities a deploy runs, each a no-op; `BareApproval`
waits on an Update exactly like the approval gate, without a record behind it, and once approved
runs the activities a deploy would. The baseline
worker runs them in its own process with the same slot settings, workflow cache size and event
loop (uvloop) as the clusterflow worker.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import uvloop
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn(name="bench.noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BareOperation")
class BareOperation:
    @workflow.run
    async def run(self, activities: int) -> int:
        for step in range(activities):
            await workflow.execute_activity(
                "bench.noop", step, start_to_close_timeout=timedelta(seconds=30), result_type=int
            )
        return activities


@workflow.defn(name="BareApproval")
class BareApproval:
    def __init__(self) -> None:
        self.decision: str | None = None

    @workflow.run
    async def run(self, activities: int) -> str:
        await workflow.wait_condition(lambda: self.decision is not None)
        assert self.decision is not None
        if self.decision == "APPROVE":
            for step in range(activities):
                await workflow.execute_activity(
                    "bench.noop", step, start_to_close_timeout=timedelta(seconds=30), result_type=int
                )
        return self.decision

    @workflow.update
    def decide(self, action: str) -> str:
        self.decision = action
        return action

    @decide.validator
    def _validate(self, action: str) -> None:
        if action not in ("APPROVE", "REJECT"):
            raise ValueError("bad action")


async def serve(address: str, task_queue: str, slots: int, cached: int) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareOperation, BareApproval],
        activities=[noop],
        max_concurrent_activities=slots,
        max_concurrent_workflow_tasks=slots,
        max_cached_workflows=cached,
    )
    await worker.run()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
