"""The audit log, for admins: filtered pages, one event, streamed exports, statistics.

Fields keep the reference API's snake_case names. Exports stream from a server-side cursor, so
an export of any size holds one batch in memory. Positional pages (`page`) stop at
`CLUSTERFLOW_POSITIONAL_PAGE_WINDOW` rows deep, as Elasticsearch's `max_result_window`: depth is
for `pageToken`, whose cost does not grow with it. Totals are exact up to
`CLUSTERFLOW_EXACT_TOTAL_LIMIT` matching events and estimated beyond.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from clusterflow.api.deps import Admin, AppSettings, Pool
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.schemas.audit import AuditDetails, TopUser
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.views import timestamp
from clusterflow.records import audit
from clusterflow.records.audit import AuditEventRow


async def _queued_events_written(request: Request) -> None:
    """This process writes audit events behind its answers (`api/audit_log.py`): reading the log
    waits for them first, briefly, so a client finds its own requests' events."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(request.app.state.audit.flush(), FLUSH_WAIT_SECONDS)


FLUSH_WAIT_SECONDS = 2.0
router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(_queued_events_written)])


class AuditEventView(BaseModel):
    id: str
    org_id: str | None
    timestamp: str
    event_type: str
    action: str
    resource: str
    resource_id: str | None
    user_id: str | None
    user_role: str | None
    request_id: str | None
    ip_address: str | None
    user_agent: str | None
    success: bool
    status_code: int
    source: str = "api"
    details: AuditDetails


class Pagination(BaseModel):
    page: int
    pageSize: int
    totalItems: int = Field(
        description="Events matching the filters: exact up to CLUSTERFLOW_EXACT_TOTAL_LIMIT (1,000 by default), "
        "beyond it the database planner's estimate (see `totalItemsExact`)"
    )
    totalItemsExact: bool = Field(
        description="False when `totalItems` (and so `totalPages`) is an estimate: more events matched than are "
        "counted exactly, and `totalItems` is above that limit"
    )
    totalPages: int = Field(description="`totalItems` in pages of `pageSize`, rounded up (an estimate with it)")
    hasNext: bool = Field(description="Whether another page follows this one (from the rows read, never estimated)")
    nextPageToken: str | None = Field(
        default=None,
        description="The `pageToken` of the next page (keyset: stable while events arrive, no cost for depth, "
        "no depth limit)",
    )


class AuditPage(BaseModel):
    events: list[AuditEventView]
    pagination: Pagination


class AuditStats(BaseModel):
    org_id: str
    period: str
    total_events: int
    events_by_type: dict[str, int]
    events_by_action: dict[str, int]
    top_users: list[TopUser]


def event_view(row: AuditEventRow) -> AuditEventView:
    return AuditEventView(
        id=row.id,
        org_id=row.organization_id,
        timestamp=timestamp(row.occurred_at) or "",
        event_type=row.event_type,
        action=row.action,
        resource=row.resource,
        resource_id=row.resource_id,
        user_id=row.actor,
        user_role=row.actor_role,
        request_id=row.request_id,
        ip_address=row.ip_address,
        user_agent=row.user_agent,
        success=row.success,
        status_code=row.status_code,
        details=row.details or {},
    )


def parse_when(value: str | None, field: str, end_of_day: bool = False) -> datetime | None:
    """A date (2024-01-15) or a timestamp (2024-01-15T00:00:00Z); a bare date as an end bound
    means the end of that day."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day, time.max if end_of_day else time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # In UTC (as PostgreSQL compares them): 0001-01-01T00:00+14:00 falls before year 1.
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"{field}: not a date or timestamp between years 1 and 9999 (UTC): {value!r}",
            [
                {
                    "field": f"query.{field}",
                    "message": "expected 2024-01-15 or 2024-01-15T00:00:00Z",
                    "type": "date_parsing",
                }
            ],
        ) from err


Text = Annotated[str | None, Query(max_length=100)]
When = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
        r"(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$",
        description="A date (2024-01-15) or a timestamp (2024-01-15T00:00:00Z)",
    ),
]


def _filter(
    eventType: str | None, action: str | None, userId: str | None, startDate: str | None, endDate: str | None
) -> audit.AuditFilter:
    return audit.AuditFilter(
        event_type=eventType,
        action=action,
        actor=userId,
        start=parse_when(startDate, "startDate"),
        end=parse_when(endDate, "endDate", end_of_day=True),
    )


@router.get("/events", response_model=Envelope[AuditPage], responses=ERRORS, summary="Audit events, newest first")
async def list_events(
    request: Request,
    principal: Admin,
    pool: Pool,
    settings: AppSettings,
    page: Annotated[
        int,
        Query(
            ge=1,
            le=100_000,
            description="Page number (positional). Positional pages reach the first CLUSTERFLOW_POSITIONAL_PAGE_WINDOW "
            "events (10,000 by default; `page` x `pageSize` at most that, page 1 always): a deeper `page` is 400. "
            "`pageToken` is stable while events arrive and continues to any depth.",
        ),
    ] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 50,
    pageToken: Annotated[
        str | None,
        Query(max_length=300, description="`pagination.nextPageToken` of the previous page (replaces `page`)"),
    ] = None,
    eventType: Text = None,
    action: Text = None,
    userId: Text = None,
    startDate: Text = None,
    endDate: Text = None,
) -> Envelope[AuditPage]:
    where = _filter(eventType, action, userId, startDate, endDate)
    after = None
    if pageToken:
        try:
            after = audit.decode_page_token(pageToken)
        except ValueError as err:
            raise ApiError(
                400, "INVALID_PAGE_TOKEN", "pageToken was not issued by this API", {"field": "pageToken"}
            ) from err
    window = settings.positional_page_window
    if after is None and not audit.positional_window_allows(page, pageSize, window):
        raise ApiError(
            400,
            "PAGE_TOO_DEEP",
            f"page: positional pages reach the first {window:,} events (page x pageSize at most {window:,}); "
            "to read further, follow pagination.nextPageToken as pageToken, which continues without limit",
            {"field": "page", "maxRows": window},
        )
    found = await audit.page(
        pool, principal.organization_id, where, page, pageSize, after, exact_total_limit=settings.exact_total_limit
    )
    total = found.total
    pages = (total.value + pageSize - 1) // pageSize
    result = AuditPage(
        events=[event_view(r) for r in found.rows],
        pagination=Pagination(
            page=page,
            pageSize=pageSize,
            totalItems=total.value,
            totalItemsExact=total.exact,
            totalPages=pages,
            hasNext=found.next_page_token is not None,
            nextPageToken=found.next_page_token,
        ),
    )
    said = f"{total.value} audit events" if total.exact else f"about {total.value:,} audit events"
    return Envelope(id=request_id_of(request), message=said, data=result)


_CSV_FIELDS = list(AuditEventView.model_fields)


@router.get(
    "/events/export",
    responses={
        200: {
            "description": "A JSON array of audit events (`format=json`), or CSV with a header row (`format=csv`; "
            "`details` is a JSON object in its column)",
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEventView"}}
                },
                "text/csv": {
                    "schema": {
                        "type": "string",
                        "description": "RFC 4180 CSV, columns: " + ", ".join(AuditEventView.model_fields),
                    }
                },
            },
        },
        **ERRORS,
    },
    summary="Export matching audit events (streamed, any size)",
    response_class=StreamingResponse,
)
async def export_events(
    principal: Admin,
    pool: Pool,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    eventType: Text = None,
    action: Text = None,
    userId: Text = None,
    startDate: Text = None,
    endDate: Text = None,
) -> StreamingResponse:
    where = _filter(eventType, action, userId, startDate, endDate)
    org = principal.organization_id

    async def rows() -> AsyncIterator[AuditEventView]:
        async with pool.acquire() as conn:
            async for row in audit.stream(conn, org, where):
                yield event_view(row)

    async def as_json() -> AsyncIterator[bytes]:
        yield b"["
        first = True
        async for event in rows():
            yield (b"" if first else b",") + event.model_dump_json().encode()
            first = False
        yield b"]"

    async def as_csv() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        async for event in rows():
            record = event.model_dump()
            record["details"] = json.dumps(record["details"], sort_keys=True)
            writer.writerow(record)
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    media = "text/csv" if format == "csv" else "application/json"
    headers = {"Content-Disposition": f'attachment; filename="audit-events.{format}"'}
    return StreamingResponse(as_csv() if format == "csv" else as_json(), media_type=media, headers=headers)


@router.get("/events/{eventId}", response_model=Envelope[AuditEventView], responses=ERRORS)
async def get_event(request: Request, eventId: str, principal: Admin, pool: Pool) -> Envelope[AuditEventView]:
    row = await audit.get(pool, principal.organization_id, eventId)
    if row is None:
        raise not_found("audit event", eventId)
    return Envelope(id=request_id_of(request), message="audit event", data=event_view(row))


@router.get("/stats", response_model=Envelope[AuditStats], responses=ERRORS, summary="Audit statistics")
async def audit_stats(
    request: Request,
    principal: Admin,
    pool: Pool,
    period: Annotated[Literal["7d", "30d", "90d"], Query()] = "30d",
) -> Envelope[AuditStats]:
    numbers = await audit.stats(pool, principal.organization_id, int(period[:-1]))
    return Envelope(
        id=request_id_of(request),
        message="audit statistics",
        data=AuditStats(org_id=principal.organization_id, period=period, **numbers),
    )
