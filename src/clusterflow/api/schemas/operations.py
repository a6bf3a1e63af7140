"""The operation record and its events, as clients poll them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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
