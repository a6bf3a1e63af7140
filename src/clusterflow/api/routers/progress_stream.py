"""`/v1/clusters/{clusterId}/progress/stream`: a cluster's live progress, WebSocket or SSE.

Both transports stream the events of one operation: `?operationId=` if given (it must belong to
the cluster), else the cluster's latest. The resume rule is the event log's: after
`Last-Event-ID` (header) or `?cursor=`. By default they follow until the terminal status event.

WebSocket authentication: the API key in the upgrade request's `Authorization: Bearer` or
`X-API-Key` header, or, for clients that cannot set headers (browsers), in a first message
`{"type": "auth", "apiKey": "..."}` sent within 10 s. Never in the URL (URLs are logged).
Messages from the server: `{"type": "event", "id": <sequence>, "event": <kind>, "data":
<OperationEvent>}`, `{"type": "keepalive"}` while idle, `{"type": "end"}` before a normal close
(1000); close code 1012 means the server is restarting: reconnect with `Last-Event-ID`.
Failures after the upgrade send `{"type": "error", "status", "error": {"code"}, "message"}`
and close with 4000 + the HTTP status (4401, 4404, 4422).

A plain GET (neither upgrade nor `Accept: text/event-stream`) answers 406.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import Response

from clusterflow.api.deps import AppSettings, Hub, Pool, Viewer
from clusterflow.api.errors import ApiError, not_found
from clusterflow.api.routers.operations import (
    SSE_CONTENT,
    SSE_DESCRIPTION,
    Follow,
    LastEventId,
    UntilTerminal,
    stream_cursor,
    wants_event_stream,
)
from clusterflow.api.schemas.common import ERRORS, ErrorEnvelope
from clusterflow.api.streams import (
    EventStreamResponse,
    StreamRequest,
    sse_frames,
    ws_close_with_error,
    ws_first_message_key,
    ws_stream,
)
from clusterflow.contracts.operations import TERMINAL_STATUSES
from clusterflow.records import clusters, operations
from clusterflow.records.db import DbPool
from clusterflow.records.operations import OperationRow
from clusterflow.records.organizations import authenticate

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])

PATH = "/{clusterId}/progress/stream"
OperationId = Annotated[str | None, Query(max_length=64, description="Default: the cluster's latest operation")]
Cursor = Annotated[int, Query(ge=0, le=2**53, description="Sequence number to continue after")]


async def _operation_of(pool: DbPool, organization_id: str, cluster_id: str, operation_id: str | None) -> OperationRow:
    if await clusters.get(pool, organization_id, cluster_id) is None:
        raise not_found("cluster", cluster_id)
    if operation_id:
        row = await operations.get(pool, organization_id, operation_id)
        if row is None or row.cluster_id != cluster_id:
            raise not_found("operation", operation_id)
        return row
    row = await operations.latest_for_cluster(pool, organization_id, cluster_id)
    if row is None:
        raise not_found("operation of cluster", cluster_id)
    return row


@router.get(
    PATH,
    response_class=Response,
    responses={
        200: {"content": SSE_CONTENT, "description": "an SSE stream of the operation's events"},
        406: {"model": ErrorEnvelope, "description": "neither a WebSocket upgrade nor an SSE request"},
        **ERRORS,
    },
    summary="Live progress of a cluster's operation (WebSocket, or SSE with Accept: text/event-stream)",
    description=SSE_DESCRIPTION,
)
async def cluster_progress_stream(
    request: Request,
    clusterId: str,
    principal: Viewer,
    pool: Pool,
    hub: Hub,
    settings: AppSettings,
    operationId: OperationId = None,
    cursor: Cursor = 0,
    follow: Follow = True,
    untilTerminal: UntilTerminal = True,
    last_event_id: LastEventId = None,
) -> Response:
    row = await _operation_of(pool, principal.organization_id, clusterId, operationId)
    if not wants_event_stream(request.headers.get("accept")):
        raise ApiError(406, "NOT_ACCEPTABLE", "upgrade to a WebSocket or send Accept: text/event-stream")
    req = StreamRequest(
        operation_id=row.id,
        cursor=stream_cursor(cursor, last_event_id),
        follow=follow,
        until_terminal=untilTerminal,
        terminal_at_start=row.status in TERMINAL_STATUSES,
    )
    return EventStreamResponse(
        sse_frames(hub, pool, req, keepalive=settings.stream_keepalive_seconds, retry_ms=settings.stream_retry_ms)
    )


def _header_key(websocket: WebSocket) -> str | None:
    auth = websocket.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return websocket.headers.get("x-api-key") or None


@router.websocket(PATH)
async def cluster_progress_websocket(
    websocket: WebSocket,
    clusterId: str,
    operationId: str | None = None,
    cursor: int = 0,
    follow: bool = True,
    untilTerminal: bool = True,
) -> None:
    pool: DbPool = websocket.app.state.pool
    hub = websocket.app.state.hub
    settings = websocket.app.state.settings
    await websocket.accept()
    key = _header_key(websocket) or await ws_first_message_key(websocket)
    principal = await authenticate(pool, key) if key else None
    if principal is None:
        await ws_close_with_error(websocket, 401, "UNAUTHORIZED", "a valid API key is required")
        return
    try:
        if cursor < 0 or (operationId is not None and len(operationId) > 64):
            raise ApiError(422, "VALIDATION_FAILED", "cursor must be >= 0 and operationId at most 64 characters")
        row = await _operation_of(pool, principal.organization_id, clusterId, operationId)
        start = stream_cursor(cursor, websocket.headers.get("last-event-id"))
    except ApiError as err:
        await ws_close_with_error(websocket, err.status_code, err.code, err.message)
        return
    req = StreamRequest(
        operation_id=row.id,
        cursor=start,
        follow=follow,
        until_terminal=untilTerminal,
        terminal_at_start=row.status in TERMINAL_STATUSES,
        transport="websocket",
    )
    await ws_stream(websocket, hub, pool, req, settings.stream_keepalive_seconds)
