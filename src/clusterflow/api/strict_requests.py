"""Requests are read strictly: a body in a media type the route does not take is a 415, a query
parameter the route does not declare is a 400 naming it, and a `Last-Event-ID` that is not an
event's sequence number in ASCII digits is a 422 naming the header.

Read loosely, `POST /v1/clusters?dryrun=true` (a misspelt `dryRun`) deploys a real cluster and
a form or a UTF-16 document is parsed as JSON. Both checks run once, for every route, as an
app-wide dependency (`check`), so they follow what each route declares instead of being
repeated per route (the media types any route takes, and UTF-8, are checked before routing by
`RequestHygieneMiddleware`, since FastAPI parses a declared body before any dependency runs):
the query parameters come from the route's dependant (its own and its
dependencies'), the media types from the request body the OpenAPI document shows for it
(`openapi_extra` for the routes that read their body by hand), else `application/json`. They
run after routing (an unknown path is still a 404, a wrong method a 405) and before any other
dependency, so nothing is read or written for a refused request.
"""

from __future__ import annotations

from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from clusterflow.api.errors import ApiError
from clusterflow.api.streams import parse_last_event_id

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
ANY_ROUTE_MEDIA_TYPES = frozenset({JSON, MERGE_PATCH})
"""What some route takes: anything else is refused before routing (`api/middleware.py`)."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Computed once per route and kept on it (routes compare by value, so they key no dict).
_DECLARED, _MEDIA = "_clusterflow_declared_query", "_clusterflow_media_types"


def declared_query(dependant: Dependant) -> frozenset[str]:
    """The query parameter names a route reads, through all its dependencies."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(field.alias for field in current.query_params)
        stack.extend(current.dependencies)
    return frozenset(names)


def accepted_media_types(route: APIRoute) -> frozenset[str]:
    """The body media types the route's OpenAPI operation lists (JSON when it lists none)."""
    content = ((route.openapi_extra or {}).get("requestBody") or {}).get("content")
    if content:
        return frozenset(str(media).lower() for media in content)
    return frozenset({JSON})


def has_body(headers: Any) -> bool:
    length = headers.get("content-length")
    if length is not None:
        return str(length).strip() not in ("", "0")
    return "transfer-encoding" in headers


def media_type_problem(content_type: str | None, accepted: frozenset[str]) -> str | None:
    """Why a body of `content_type` is refused where `accepted` media types are taken (UTF-8
    only), or None."""
    wanted = ", ".join(sorted(accepted))
    if content_type is None or not content_type.strip():
        return f"a request body needs a Content-Type: {wanted}"
    media, *params = (part.strip() for part in content_type.split(";"))
    if media.lower() not in accepted:
        return f"Content-Type {media!r} is not accepted here; send {wanted}"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return f"charset {value.strip()!r} is not accepted; send UTF-8"
    return None


def unsupported_media_type(message: str, content_type: str | None, accepted: frozenset[str]) -> ApiError:
    return ApiError(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        message,
        {"field": "Content-Type", "received": content_type, "accepted": sorted(accepted)},
    )


def check_media_type(connection: HTTPConnection, route: APIRoute) -> None:
    if connection.scope.get("method") not in BODY_METHODS or not has_body(connection.headers):
        return
    accepted: frozenset[str] | None = getattr(route, _MEDIA, None)
    if accepted is None:
        accepted = accepted_media_types(route)
        setattr(route, _MEDIA, accepted)
    content_type = connection.headers.get("content-type")
    problem = media_type_problem(content_type, accepted)
    if problem is not None:
        raise unsupported_media_type(problem, content_type, accepted)


def check_query(connection: HTTPConnection, route: APIRoute) -> None:
    declared: frozenset[str] | None = getattr(route, _DECLARED, None)
    if declared is None:
        declared = declared_query(route.dependant)
        setattr(route, _DECLARED, declared)
    unknown = sorted({name for name in connection.query_params if name not in declared})
    if unknown:
        raise ApiError(
            400,
            "UNKNOWN_QUERY_PARAMETER",
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
            + (f"; this route takes {', '.join(sorted(declared))}" if declared else "; this route takes none"),
            [
                {"field": name, "message": "not a parameter of this route", "type": "unknown_parameter"}
                for name in unknown
            ],
        )


def check_last_event_id(connection: HTTPConnection) -> None:
    """An SSE client's resume point: the ASCII sequence number of an event, or nothing."""
    try:
        parse_last_event_id(connection.headers.get("last-event-id"))
    except ValueError as err:
        # 422 as the stream routes have always answered it (clients may branch on it).
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            str(err),
            [{"field": "Last-Event-ID", "message": str(err), "type": "value_error"}],
        ) from err


async def check(connection: HTTPConnection) -> None:
    """The app-wide dependency: 400 for undeclared query parameters, 422 for a malformed
    `Last-Event-ID`, 415 for a body this route does not take."""
    route: Any = connection.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    check_query(connection, route)
    check_last_event_id(connection)
    check_media_type(connection, route)
