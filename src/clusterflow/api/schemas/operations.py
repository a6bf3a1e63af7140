"""The operation record and its events, as clients poll them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from clusterflow.api.schemas.common import Strict


class OperationErrorView(BaseModel):
    code: str
    message: str
    retryable: bool


class OperationEvent(BaseModel):
    sequence: int
    timestamp: str
    kind: str = Field(description="progress, phase, log or status")
    level: str
    phase: str | None
    progressPercentage: int | None
    message: str
    rawOutput: str | None = None
    labels: dict[str, str] = {}


class ApprovalView(BaseModel):
    requiredRole: str
    expiresAt: str | None
    planHash: str | None = None
    decision: str | None = None
    decidedBy: str | None = None
    decidedAt: str | None = None
    comment: str | None = None


class CancellationView(BaseModel):
    requestedAt: str
    requestedBy: str | None
    forced: bool


class Operation(BaseModel):
    operationId: str
    organizationId: str
    operationType: str
    status: str
    currentPhase: str | None
    progressPercentage: int
    message: str | None
    error: OperationErrorView | None
    clusterId: str | None
    clusterName: str | None
    userId: str | None = Field(description="The API key that requested the operation")
    attempt: int
    metadata: dict[str, Any]
    result: dict[str, Any] | None
    createdAt: str
    startedAt: str | None
    lastUpdate: str
    completedAt: str | None
    isCancelable: bool
    isApprovable: bool
    approval: ApprovalView | None = None
    cancellation: CancellationView | None = None
    recentEvents: list[OperationEvent] = []


class OperationPage(BaseModel):
    operations: list[Operation]
    totalCount: int
    nextPageToken: str | None = None


class EventPage(BaseModel):
    events: list[OperationEvent]
    nextCursor: int = Field(description="Pass as ?cursor= to continue after the last event")
    status: str
    terminal: bool


class ApprovalDecision(Strict):
    action: Literal["APPROVE", "REJECT"]
    token: str = Field(min_length=1, max_length=200)
    comment: str | None = Field(default=None, max_length=1000)
    planHash: str | None = Field(
        default=None, max_length=100, description="The plan the approver reviewed; refused if the plan changed"
    )


class DecisionOutcome(BaseModel):
    operationId: str
    status: str
    decision: str


class CancelOutcome(BaseModel):
    operationId: str
    status: str
    forced: bool
    terminated: bool = Field(description="True when a force cancel had to terminate the workflow")
