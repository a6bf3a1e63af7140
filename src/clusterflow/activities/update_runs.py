"""Activities of a fleet update run: open a cluster's update, write the run's state, close
updates that never began, and find a maintenance window's next opening.

`open_child` is the one place a run creates a CLUSTER_UPDATE operation. It is keyed by
(run, cluster): the operation's ID was chosen at enqueue, the planned cluster's row is locked
while deciding, and an operation that already exists is answered as it is. So a worker that
dies after the insert, or Temporal retrying the activity, never creates or starts a second
update; the parent starts the child workflow under the same ID, which Temporal refuses to
start twice. The operation row is marked as started by its parent so the reconciler (which
starts top-level operations whose start was lost) leaves it to the run.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime

from temporalio import activity
from temporalio.converter import value_to_type
from temporalio.exceptions import ApplicationError

from clusterflow.contracts.cluster import NodeGroupSpec
from clusterflow.contracts.operations import ClusterState, OperationType, UpdateInput
from clusterflow.contracts.update_runs import (
    CloseChildren,
    OpenChild,
    OpenedChild,
    OpenOutcome,
    SaveSnapshot,
    WindowOpening,
)
from clusterflow.records import clusters, operations, update_runs
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.db import DbPool
from clusterflow.records.errors import ClusterBusy

CHILD_WORKFLOW_TYPE = "ClusterUpdate"


def _rebased(update: UpdateInput, row: ClusterRow) -> UpdateInput | None:
    """The update planned at enqueue, on the cluster as it is recorded now.

    A run's change moves versions only, so what another operation changed meanwhile (tags, most
    often) is carried into the plan's before and after: the update must not write back the tags
    the cluster had when the run was planned. Node groups that changed make the planned node
    group upgrades wrong: None, and the cluster is skipped."""
    plan = update.plan
    groups = tuple(NodeGroupSpec.from_document(g) for g in row.worker_nodes or ())
    if groups != plan.before.node_groups:
        return None
    tags = {str(k): str(v) for k, v in (row.tags or {}).items()}
    if tags == dict(plan.before.tags):
        return update
    moved = replace(plan, before=replace(plan.before, tags=tags), after=replace(plan.after, tags=tags))
    return replace(update, plan=moved)


class UpdateRunActivities:
    def __init__(self, pool: DbPool) -> None:
        self.pool = pool

    @activity.defn(name="update_runs.open_child")
    async def open_child(self, inp: OpenChild) -> OpenedChild:
        async with self.pool.acquire() as conn, conn.transaction():
            found = await update_runs.lock_child(conn, inp.run_id, inp.cluster_id)
            if found is None:
                raise ApplicationError(
                    f"cluster {inp.cluster_id} is not part of run {inp.run_id}",
                    type="UNKNOWN_CHILD",
                    non_retryable=True,
                )
            child = found.child
            update: UpdateInput = value_to_type(UpdateInput, child.update_input)
            if found.existing_status is not None:
                return OpenedChild(OpenOutcome.OPENED, child.operation_id, update)
            row = await clusters.lock(conn, found.organization_id, inp.cluster_id)
            if row is None or row.state == ClusterState.DELETED:
                return OpenedChild(OpenOutcome.SKIPPED, reason="the cluster was deleted")
            if row.active_operation_id is not None:
                return OpenedChild(OpenOutcome.BUSY, reason=f"operation {row.active_operation_id} is in flight")
            if row.kubernetes_version != child.planned_version:
                if row.kubernetes_version == child.target_version:
                    return OpenedChild(OpenOutcome.SKIPPED, reason=f"already on {child.target_version}")
                return OpenedChild(
                    OpenOutcome.SKIPPED,
                    reason=f"the cluster runs {row.kubernetes_version}, not the {child.planned_version} "
                    "it was planned from: start a new run",
                )
            rebased = _rebased(update, row)
            if rebased is None:
                return OpenedChild(
                    OpenOutcome.SKIPPED,
                    reason="the cluster's node groups changed since the run was planned: start a new run",
                )
            if rebased is not update:
                update = rebased
                document = asdict(update)
                await update_runs.set_child_input(conn, inp.run_id, inp.cluster_id, document)
                child = replace(child, update_input=document)
            try:
                await operations.insert(
                    conn,
                    operation_id=child.operation_id,
                    organization_id=found.organization_id,
                    cluster_id=child.cluster_id,
                    cluster_name=child.cluster_name,
                    operation_type=OperationType.CLUSTER_UPDATE,
                    requested_by=found.requested_by,
                    idempotency_key=None,
                    workflow_type=CHILD_WORKFLOW_TYPE,
                    workflow_input=child.update_input,
                    metadata={
                        "updateRunId": inp.run_id,
                        "stage": child.stage,
                        "group": child.group,
                        "targetVersion": child.target_version,
                    },
                    message=f"update run {inp.run_id}: stage {child.stage}, group {child.group}",
                )
            except ClusterBusy as err:
                return OpenedChild(OpenOutcome.BUSY, reason=f"operation {err.active_operation_id} is in flight")
            await operations.mark_workflow_started(conn, child.operation_id)
            # The run's event in the same transaction: one activity per cluster fewer in the run's
            # history (the key makes a repeat after a retry a no-op).
            await operations.append_event(
                conn,
                inp.run_id,
                f"child/{inp.cluster_id}/started",
                f"cluster {child.cluster_name}: update {child.operation_id} started",
                labels={"clusterId": inp.cluster_id, "operationId": child.operation_id},
            )
        return OpenedChild(OpenOutcome.OPENED, child.operation_id, update)

    @activity.defn(name="update_runs.save_snapshot")
    async def save_snapshot(self, inp: SaveSnapshot) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await update_runs.save_snapshot(conn, inp.run_id, asdict(inp.snapshot), inp.snapshot.status)
            if inp.event_key and inp.event_message:
                await operations.append_event(
                    conn,
                    inp.run_id,
                    inp.event_key,
                    inp.event_message,
                    level=inp.event_level,
                    progress_percentage=inp.progress_percentage,
                    labels={"runStatus": inp.snapshot.status},
                )

    @activity.defn(name="update_runs.close_children")
    async def close_children(self, inp: CloseChildren) -> list[str]:
        async with self.pool.acquire() as conn, conn.transaction():
            return await update_runs.cancel_unbegun(conn, inp.run_id, list(inp.cluster_ids), inp.reason)

    @activity.defn(name="update_runs.window_opening")
    async def window_opening(self, inp: WindowOpening) -> str:
        """Time zones are data files: read here, not in the workflow."""
        return inp.window.next_opening(datetime.fromisoformat(inp.after)).isoformat()
