"""Records ClusterDeploy histories for `tests/unit/test_workflow_replay.py` with the workflow
code of the tree it runs from; activities are stubbed by name (a history keeps only their
results).

    PYTHONPATH=<tree>/src:<tree> python tests/unit/histories/record_deploy_history.py OUT_DIR SUFFIX

writes `deploy_retried_<SUFFIX>.json` (NETWORK fails once in the cloud, then succeeds) and
`deploy_exhausted_<SUFFIX>.json` (NETWORK fails on every attempt: the deploy ends FAILED).
The `before_phase_runs_counted` pair came from commit 98826d8 (`git archive 98826d8`), the
last before the workflow counted phases' runs itself; the `phase_runs_counted` pair from the
tree that added that counting.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker
from tests.helpers import deploy_document

from clusterflow.contracts.operations import BeginInput, BeginResult, DeployInput, ExecutionPolicy, FinishInput
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult
from clusterflow.devstack.postgres import free_port
from clusterflow.devstack.temporal import EmbeddedTemporal
from clusterflow.workflows.deploy import ClusterDeployWorkflow


@activity.defn(name="records.begin_operation")
async def begin(inp: BeginInput) -> BeginResult:
    return BeginResult(proceed=True, status="RUNNING")


@activity.defn(name="records.finish_operation")
async def finish(inp: FinishInput) -> bool:
    return True


@activity.defn(name="local.deploy_phase")
async def deploy_phase(inp: PhaseInput) -> PhaseResult:
    first_run = activity.info().attempt == 1 and getattr(inp, "run", 0) <= 1  # whoever counts the runs
    if inp.phase == "NETWORK" and (first_run or inp.cluster_name == "exhausted"):
        raise ApplicationError("simulated transient failure", type="SIMULATED_FAILURE")
    return PhaseResult(inp.phase, resources=[f"{inp.phase.lower()}/x"])


async def record(client: Client, queue: str, name: str, out: Path) -> None:
    doc = deploy_document(name)
    inp = DeployInput(
        operation_id=f"op_{name}",
        organization_id="org_replayed",
        cluster_id=f"cl_{name}",
        cluster_name=name,
        provider="local",
        region="local-1",
        spec=doc["spec"],
        policy=ExecutionPolicy(retry_initial_seconds=0.1, max_attempts=2),
    )
    handle = await client.start_workflow(ClusterDeployWorkflow.run, inp, id=inp.operation_id, task_queue=queue)
    with contextlib.suppress(WorkflowFailureError):  # the exhausted deploy fails, as it should
        await handle.result()
    out.write_text((await handle.fetch_history()).to_json())


async def main(out_dir: Path, suffix: str) -> None:
    temporal = EmbeddedTemporal(None, free_port(), None)
    temporal.start()
    try:
        for _ in range(100):  # the dev server listens before its frontend is healthy
            try:
                client = await Client.connect(temporal.address)
                break
            except RuntimeError:
                await asyncio.sleep(0.2)
        queue = f"record-{uuid.uuid4().hex[:8]}"
        activities = [begin, finish, deploy_phase]
        async with Worker(client, task_queue=queue, workflows=[ClusterDeployWorkflow], activities=activities):
            for name in ("retried", "exhausted"):
                await record(client, queue, name, out_dir / f"deploy_{name}_{suffix}.json")
    finally:
        temporal.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
