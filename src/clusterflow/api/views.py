"""Database rows to API documents: the one place field names are translated to camelCase."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clusterflow.api.schemas.clusters import ClusterStatusDetail, ClusterView
from clusterflow.api.schemas.operations import (
    ApprovalReceived,
    ApprovalRuleView,
    ApprovalView,
    CancellationView,
    Operation,
    OperationErrorView,
    OperationEvent,
)
from clusterflow.contracts.operations import OperationStatus
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.operations import EventRow, OperationRow

CANCELABLE = {OperationStatus.PENDING, OperationStatus.AWAITING_APPROVAL, OperationStatus.RUNNING}


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ts(value: datetime) -> str:
    out = timestamp(value)
    assert out is not None
    return out


def approval_view(row: OperationRow) -> ApprovalView | None:
    """The approval part of an operation record: the rules fixed at enqueue and every decision."""
    if not row.approval_required_role:
        return None
    required = row.approval_required_count or 1
    received = [
        ApprovalReceived(by=r.by, at=_ts(r.at), decision=r.decision, comment=r.comment) for r in row.approval_received
    ]
    approvals = sum(1 for r in row.approval_received if r.decision == "APPROVE")
    waiting = row.status == OperationStatus.AWAITING_APPROVAL
    rule = row.approval_rule
    return ApprovalView(
        requiredRole=row.approval_required_role,
        expiresAt=timestamp(row.approval_expires_at),
        planHash=row.approval_plan_hash,
        decision=row.approval_decision,
        decidedBy=row.approval_decided_by,
        decidedAt=timestamp(row.approval_decided_at),
        comment=row.approval_comment,
        required=required,
        received=received,
        remaining=max(required - approvals, 0) if waiting else 0,
        requireDifferentApprover=row.approval_require_different_approver,
        rule=ApprovalRuleView(name=rule.name, labelSelector=rule.label_selector) if rule else None,
    )


def event_view(row: EventRow) -> OperationEvent:
    return OperationEvent(
        sequence=row.sequence,
        timestamp=_ts(row.timestamp),
        kind=row.kind,
        level=row.level,
        phase=row.phase,
        progressPercentage=row.progress_percentage,
        message=row.message,
        rawOutput=row.raw_output,
        labels=row.labels or {},
    )


def operation_view(row: OperationRow, events: list[EventRow] | None = None) -> Operation:
    status = row.status
    error = row.error
    return Operation(
        operationId=row.id,
        organizationId=row.organization_id,
        operationType=row.operation_type,
        status=status,
        currentPhase=row.current_phase,
        progressPercentage=row.progress_percentage,
        message=row.message,
        error=OperationErrorView(**error) if error else None,
        clusterId=row.cluster_id,
        clusterName=row.cluster_name,
        userId=row.requested_by,
        attempt=row.attempt,
        metadata=row.metadata or {},
        result=row.result,
        createdAt=_ts(row.created_at),
        startedAt=timestamp(row.started_at),
        lastUpdate=_ts(row.last_update),
        completedAt=timestamp(row.completed_at),
        isCancelable=status in CANCELABLE,
        isApprovable=status == OperationStatus.AWAITING_APPROVAL,
        approval=approval_view(row),
        cancellation=CancellationView(
            requestedAt=_ts(row.cancel_requested_at),
            requestedBy=row.cancel_requested_by,
            forced=row.cancel_forced,
        )
        if row.cancel_requested_at
        else None,
        recentEvents=[event_view(e) for e in events or []],
        eventsRetiredAt=timestamp(row.events_retired_at),
    )


def _status_detail(value: dict[str, Any] | None) -> ClusterStatusDetail | None:
    return ClusterStatusDetail(**value) if value else None


def cluster_view(row: ClusterRow) -> ClusterView:
    return ClusterView(
        clusterId=row.id,
        clusterName=row.name,
        provider=row.provider,
        provisionerType=row.provisioner_type,
        region=row.region,
        kubernetesVersion=row.kubernetes_version,
        state=row.state,
        controlPlaneNode=row.control_plane,
        workerNodes=row.worker_nodes or [],
        tags=dict(row.tags or {}),
        labels=dict(row.labels),
        activeOperationId=row.active_operation_id,
        upgradeStatus=_status_detail(row.upgrade_status),
        rollbackStatus=_status_detail(row.rollback_status),
        createdTimestamp=_ts(row.created_at),
        lastUpdatedTimestamp=_ts(row.updated_at),
        deletedTimestamp=timestamp(row.deleted_at),
    )
