"""CLUSTER_DELETE: tear a provisioned cluster down, pre-empting a deploy still running."""

from __future__ import annotations

from dataclasses import dataclass

from clusterflow.api.commands.common import ClusterCommand, issue_approval
from clusterflow.api.enqueue import OperationPlan
from clusterflow.api.errors import ApiError
from clusterflow.contracts.operations import DeleteInput, OperationType
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.db import Conn
from clusterflow.records.registrations import is_registered
from clusterflow.workflows.registry import WORKFLOW_TYPES


def registered_cluster_delete_refused(row: ClusterRow) -> ApiError:
    """What `DELETE /v1/clusters/{id}` answers for a registered cluster (see `is_registered`):
    its resources are not ours to delete; unregistering removes the agent instead."""
    return ApiError(
        409,
        "CLUSTER_IS_REGISTERED",
        f"cluster {row.name} is registered through an agent, not provisioned by us: "
        f"unregister it with DELETE /v1/clusters/{row.name}/registration",
        {"clusterId": row.id, "unregister": f"/v1/clusters/{row.name}/registration"},
    )


@dataclass(frozen=True, kw_only=True)
class DeleteCluster(ClusterCommand):
    operation_type = OperationType.CLUSTER_DELETE

    async def prepare(self, conn: Conn) -> OperationPlan:
        locked = await self.lock(conn)
        row = locked.row
        if is_registered(row):
            raise registered_cluster_delete_refused(row)
        approval = await issue_approval(self, conn, self.operation_type, labels=row.labels)
        return OperationPlan(
            operation_type=self.operation_type,
            workflow_type=WORKFLOW_TYPES[self.operation_type],
            workflow_input=DeleteInput(
                preempts=locked.preempts, previous_state=row.state, **self.input_fields(row, approval)
            ),
            cluster_id=self.cluster_id,
            cluster_name=row.name,
            accepted_message="delete accepted",
            metadata={"preempts": locked.preempts} if locked.preempts else None,
            approval=approval,
            show_token=approval is not None and approval.shown_to(self.ctx.principal),
        )
