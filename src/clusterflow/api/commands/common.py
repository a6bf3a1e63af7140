"""What the commands share: the execution policy, the cluster document, the approval, and for
an existing cluster the lock and the input fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ValidationError

from clusterflow.api import approvals
from clusterflow.api.approvals import IssuedApproval
from clusterflow.api.cluster_lock import LockedCluster, lock_cluster_for
from clusterflow.api.enqueue import OperationCommand
from clusterflow.api.errors import validation_error
from clusterflow.api.schemas.clusters import API_VERSION, ClusterSpec, K8sCluster
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.contracts.operations import ExecutionPolicy
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.db import Conn
from clusterflow.settings import Settings


def execution_policy(settings: Settings) -> ExecutionPolicy:
    return ExecutionPolicy(
        retry_initial_seconds=settings.activity_retry_initial_seconds,
        max_attempts=settings.activity_max_attempts,
        heartbeat_timeout_seconds=settings.activity_heartbeat_timeout_seconds,
        max_infrastructure_retries=settings.activity_max_infrastructure_retries,
        phase_deadline_seconds=settings.phase_deadline_seconds,
        record_deadline_seconds=settings.record_write_deadline_seconds,
    )


def normalized_spec(row: ClusterRow) -> dict[str, Any]:
    """The cluster's spec with defaults filled in, as the deploy workflow received it."""
    return parse_cluster_document(dict(row.spec)).spec.model_dump(mode="json", exclude_none=True)


def parse_cluster_document(body: dict[str, Any]) -> K8sCluster:
    """A K8sCluster document, or the reference's legacy flat body (the spec alone)."""
    legacy = "spec" not in body and "apiVersion" not in body and "kind" not in body
    try:
        if legacy:
            return K8sCluster(apiVersion=API_VERSION, kind="K8sCluster", spec=ClusterSpec.model_validate(body))
        return K8sCluster.model_validate(body)
    except ValidationError as err:
        raise validation_error(err.errors(), strip_prefix=()) from err


async def issue_approval(
    command: OperationCommand, conn: Conn, operation_type: str, **requirement: Any
) -> IssuedApproval | None:
    """The approval the organization's policy asks for this operation, if any."""
    ctx = command.ctx
    return await approvals.issue_if_required(
        conn,
        ctx.organization_id,
        operation_type,
        ctx.settings.approval_window_seconds,
        caches=ctx.caches,
        requested_by=ctx.principal.key_id,
        **requirement,
    )


@dataclass(frozen=True, kw_only=True)
class ClusterCommand(OperationCommand):
    """An operation on an existing cluster, decided with its row locked (`api/cluster_lock.py`)."""

    operation_type: ClassVar[str]
    cluster_id: str

    async def lock(self, conn: Conn) -> LockedCluster:
        return await lock_cluster_for(conn, self.ctx.organization_id, self.cluster_id, self.operation_type)

    def input_fields(self, row: ClusterRow, approval: IssuedApproval | None) -> dict[str, Any]:
        """The fields every cluster workflow input starts with, from the locked row."""
        spec = normalized_spec(row)
        return {
            "operation_id": self.operation_id,
            "organization_id": self.ctx.organization_id,
            "cluster_id": self.cluster_id,
            "cluster_name": row.name,
            "provider": row.provider,
            "region": row.region,
            "spec": spec,
            "policy": execution_policy(self.ctx.settings),
            "approval": approval.requirement if approval else None,
            "definition": ClusterDefinition.from_spec(spec),
        }
