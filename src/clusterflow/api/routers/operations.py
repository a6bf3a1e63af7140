"""Operations across the organization: list with filters, one record, its event log.

The event log is one route with two representations: JSON pages by default, a live SSE stream
(`api/streams.py`) when the client sends `Accept: text/event-stream`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from clusterflow.api.deps import AppSettings, Hub, Pool, Viewer
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.listing import operation_page, operations_message
from clusterflow.api.read_caches import CachedOperation, ReadCaches
from clusterflow.api.schemas.common import ERRORS, Envelope, envelope_json
from clusterflow.api.schemas.operations import EventPage, Operation, OperationPage
from clusterflow.api.streams import EventStreamResponse, StreamRequest, parse_last_event_id, sse_frames
from clusterflow.api.views import event_view, operation_view, timestamp
from clusterflow.contracts.operations import TERMINAL_STATUSES, OperationStatus, OperationType
from clusterflow.records import operations

router = APIRouter(prefix="/v1/operations", tags=["operations"])


@router.get("", response_model=Envelope[OperationPage], responses=ERRORS, summary="List operations")
async def list_operations(
    request: Request,
    principal: Viewer,
    pool: Pool,
    settings: AppSettings,
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
        exact_total_limit=settings.exact_total_limit,
    )
    return Envelope(id=request_id_of(request), message=operations_message(page), data=page)


@router.get("/{operationId}", response_model=Envelope[Operation], responses=ERRORS, summary="One operation record")
async def get_operation(request: Request, operationId: str, principal: Viewer, pool: Pool) -> Response:
    # The route clients poll. Its document comes from this process's operation cache when it can
    # (`api/read_caches.py`), else from one pooled connection for both reads; either way the
    # envelope is encoded here (returning the model would validate and encode it a second time).
    caches: ReadCaches = request.app.state.caches
    cached = caches.operations.get(operationId)
    if cached is None or cached.organization_id != principal.organization_id:
        with caches.operations.reading(operationId) as read:
            async with pool.acquire() as conn:
                row = await operations.get(conn, principal.organization_id, operationId)
                if row is None:
                    raise not_found("operation", operationId)
                events = await operations.recent_events(conn, operationId)
            cached = CachedOperation(
                principal.organization_id, operation_view(row, events).model_dump_json(by_alias=True).encode()
            )
            read.store(cached)
    return Response(envelope_json(request_id_of(request), "operation", cached.data_json), media_type="application/json")


SSE_DESCRIPTION = (
    "With `Accept: text/event-stream`: one SSE event per record event (`id:` its sequence, "
    "`event:` its kind, `data:` the OperationEvent JSON), a `retry:` line first and `: keep-alive` "
    "comments while idle. Resumes after `Last-Event-ID` (or `?cursor=`): no gap, no duplicate."
)
SSE_CONTENT = {
    "text/event-stream": {"schema": {"type": "string"}, "example": 'id: 1\nevent: status\ndata: {"sequence": 1}\n\n'}
}


def wants_event_stream(accept: str | None) -> bool:
    return accept is not None and "text/event-stream" in accept.lower()


def stream_cursor(cursor: int, last_event_id: str | None) -> int:
    """`Last-Event-ID` wins over `?cursor=`: a browser reconnects with the original URL."""
    try:
        resumed = parse_last_event_id(last_event_id)
    except ValueError as err:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            str(err),
            [{"field": "Last-Event-ID", "message": str(err), "type": "value_error"}],
        ) from err
    return cursor if resumed is None else resumed


LastEventId = Annotated[
    str | None, Header(alias="Last-Event-ID", max_length=64, description="Resume after this event (SSE)")
]
Follow = Annotated[bool, Query(description="SSE: keep the stream open for new events")]
UntilTerminal = Annotated[
    bool, Query(description="SSE: close the stream after the terminal status event (when following)")
]


@router.get(
    "/{operationId}/events",
    response_model=Envelope[EventPage],
    responses={200: {"content": SSE_CONTENT, "description": "a page of events, or an SSE stream"}, **ERRORS},
    summary="The operation's event log, in sequence order, after a cursor; SSE when asked",
    description=SSE_DESCRIPTION,
)
async def operation_events(
    request: Request,
    operationId: str,
    principal: Viewer,
    pool: Pool,
    hub: Hub,
    settings: AppSettings,
    cursor: Annotated[int, Query(ge=0, le=2**53, description="Sequence number to continue after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    follow: Follow = False,
    untilTerminal: UntilTerminal = True,
    last_event_id: LastEventId = None,
) -> Envelope[EventPage] | Response:
    row = await operations.get(pool, principal.organization_id, operationId)
    if row is None:
        raise not_found("operation", operationId)
    if wants_event_stream(request.headers.get("accept")):
        req = StreamRequest(
            operation_id=operationId,
            cursor=stream_cursor(cursor, last_event_id),
            follow=follow,
            until_terminal=untilTerminal,
            terminal_at_start=row.status in TERMINAL_STATUSES,
        )
        frames = sse_frames(
            hub, pool, req, keepalive=settings.stream_keepalive_seconds, retry_ms=settings.stream_retry_ms
        )
        return EventStreamResponse(frames)
    events = await operations.events_after(pool, operationId, cursor, limit)
    page = EventPage(
        events=[event_view(e) for e in events],
        nextCursor=events[-1].sequence if events else cursor,
        status=row.status,
        terminal=row.status in TERMINAL_STATUSES,
        eventsRetiredAt=timestamp(row.events_retired_at),
    )
    message = f"{len(events)} events"
    if page.eventsRetiredAt is not None:
        message = (
            f"the events of this operation were retired by retention at {page.eventsRetiredAt}; "
            "the record keeps its summary and final status"
        )
    return Envelope(id=request_id_of(request), message=message, data=page)
