"""Operations across the organization: list with filters, one record, its event log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from clusterflow.api.deps import Pool, Viewer
from clusterflow.api.errors import not_found, request_id_of
from clusterflow.api.listing import operation_page
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.schemas.operations import EventPage, Operation, OperationPage
from clusterflow.api.views import event_view, operation_view
from clusterflow.records import operations
from clusterflow.workflows.contracts import (
    TERMINAL_STATUSES,
    OperationStatus,
    OperationType,
)

router = APIRouter(prefix="/v1/operations", tags=["operations"])


@router.get("", response_model=Envelope[OperationPage], responses=ERRORS, summary="List operations")
async def list_operations(
    request: Request,
    principal: Viewer,
    pool: Pool,
    operationType: OperationType | None = None,
    status: OperationStatus | None = None,
    clusterId: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    pageToken: Annotated[str | None, Query(max_length=200)] = None,
) -> Envelope[OperationPage]:
    page = await operation_page(
        pool,
        principal.organization_id,
        limit=limit,
        page_token=pageToken,
        cluster_id=clusterId,
        operation_type=operationType,
        status=status,
    )
    return Envelope(id=request_id_of(request), message=f"{page.totalCount} operations", data=page)


@router.get("/{operationId}", response_model=Envelope[Operation], responses=ERRORS, summary="One operation record")
async def get_operation(request: Request, operationId: str, principal: Viewer, pool: Pool) -> Envelope[Operation]:
    row = await operations.get(pool, principal.organization_id, operationId)
    if row is None:
        raise not_found("operation", operationId)
    events = await operations.recent_events(pool, operationId)
    return Envelope(id=request_id_of(request), message="operation", data=operation_view(row, events))


@router.get(
    "/{operationId}/events",
    response_model=Envelope[EventPage],
    responses=ERRORS,
    summary="The operation's event log, in sequence order, after a cursor",
)
async def operation_events(
    request: Request,
    operationId: str,
    principal: Viewer,
    pool: Pool,
    cursor: Annotated[int, Query(ge=0, description="Sequence number to continue after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Envelope[EventPage]:
    row = await operations.get(pool, principal.organization_id, operationId)
    if row is None:
        raise not_found("operation", operationId)
    events = await operations.events_after(pool, operationId, cursor, limit)
    page = EventPage(
        events=[event_view(e) for e in events],
        nextCursor=events[-1]["sequence"] if events else cursor,
        status=row["status"],
        terminal=row["status"] in TERMINAL_STATUSES,
    )
    return Envelope(id=request_id_of(request), message=f"{len(events)} events", data=page)
