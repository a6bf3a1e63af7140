"""Operations a registered cluster's agent carries out: unregister, kubeconfig, resync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusterflow.api.commands.common import execution_policy
from clusterflow.api.enqueue import OperationCommand, OperationPlan
from clusterflow.contracts.agent import AgentTaskInput
from clusterflow.contracts.operations import OperationType
from clusterflow.records import secrets_store, withdrawals
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.db import Conn
from clusterflow.workflows.registry import WORKFLOW_TYPES


@dataclass(frozen=True, kw_only=True)
class AgentTask(OperationCommand):
    """An operation whose workflow works through the cluster's agent (its row already read)."""

    operation_type: str
    row: ClusterRow
    timeout_seconds: float
    accepted_message: str

    async def prepare(self, conn: Conn) -> OperationPlan:
        return self.plan()

    def plan(self, metadata: dict[str, Any] | None = None) -> OperationPlan:
        row = self.row
        return OperationPlan(
            operation_type=self.operation_type,
            workflow_type=WORKFLOW_TYPES[self.operation_type],
            workflow_input=AgentTaskInput(
                operation_id=self.operation_id,
                organization_id=self.ctx.organization_id,
                cluster_id=row.id,
                cluster_name=row.name,
                timeout_seconds=self.timeout_seconds,
                policy=execution_policy(self.ctx.settings),
            ),
            cluster_id=row.id,
            cluster_name=row.name,
            accepted_message=self.accepted_message,
            metadata=metadata,
        )


@dataclass(frozen=True, kw_only=True)
class GenerateKubeconfig(AgentTask):
    """KUBECONFIG_GENERATE: the request row the agent's answer is sealed into."""

    operation_type: str = OperationType.KUBECONFIG_GENERATE
    accepted_message: str = "kubeconfig generation accepted; poll GET /kubeconfig"
    duration_seconds: int

    async def prepare(self, conn: Conn) -> OperationPlan:
        # Its foreign key to the operation is deferred: the operation row follows in this transaction.
        await secrets_store.insert_kubeconfig_request(
            conn,
            operation_id=self.operation_id,
            organization_id=self.ctx.organization_id,
            cluster_id=self.row.id,
            duration_seconds=self.duration_seconds,
        )
        return self.plan({"durationSeconds": self.duration_seconds})

    async def abandon(self, conn: Conn) -> None:
        await withdrawals.delete_kubeconfig_request(conn, self.operation_id)
