"""One error envelope for every failure, with a stable code and the field at fault.

FastAPI's own 422 body is replaced so a client always sees `{id, status: "error", message,
error: {code, details}}`; malformed JSON is a 400 (the request could not be read at all), a
well-formed document that breaks a rule is a 422 naming each field. A dependency that is down
(PostgreSQL, Temporal) is a 503 with `Retry-After`, whatever route met it
(`api/dependency_faults.py`); anything else unexpected is a 500 logged once with its traceback.
Handlers are registered per exception class, not for `Exception`: Starlette answers a handler
of `Exception` and then raises the error again, so the server would log a second traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import RPCTimeoutOrCancelledError
from temporalio.service import RPCError

from clusterflow.api.dependency_faults import (
    CODES,
    MESSAGES,
    RETRY_AFTER_SECONDS,
    DependencyUnavailable,
    Outages,
    classify,
)
from clusterflow.records.db import BROKEN_CONNECTION
from clusterflow.records.errors import DATABASE_UNREACHABLE, DatabaseError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} {ident} not found")


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "req_unknown"))


def error_response(request: Request, err: ApiError) -> JSONResponse:
    body = {
        "id": request_id_of(request),
        "status": "error",
        "message": err.message,
        "error": {"code": err.code, "details": err.details},
    }
    return JSONResponse(body, status_code=err.status_code, headers=err.headers)


# Pydantic names the branch of a union in an error's location ("duration.constrained-int");
# clients want the field. No field of ours is named like these tags.
_UNION_TAG = re.compile(r"^(constrained-)?(int|str|float|bool|bytes|list|dict|none)$|^[a-z-]+\[.*\]$|^function-")


def _field_path(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",) and not _UNION_TAG.match(str(p))]
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path or "body"


def validation_error(errors: Sequence[Any], *, strip_prefix: tuple[str, ...] = ()) -> ApiError:
    details = []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if strip_prefix and loc[: len(strip_prefix)] == strip_prefix:
            loc = loc[len(strip_prefix) :]
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        details.append({"field": _field_path(loc), "message": message, "type": str(e.get("type", "invalid"))})
    if any(d["type"] == "json_invalid" for d in details):
        return ApiError(400, "MALFORMED_JSON", "request body is not valid JSON", details)
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return ApiError(422, "VALIDATION_FAILED", f"invalid request: {summary}", details)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(request, err)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(request, validation_error(err.errors()))

    @app.exception_handler(ValidationError)
    async def _model_validation(request: Request, err: ValidationError) -> JSONResponse:
        return error_response(request, validation_error(err.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED", 413: "BODY_TOO_LARGE"}
        headers = dict(err.headers or {})
        if err.status_code == 405:
            # A path served by several routers: Starlette names only the first route's methods.
            headers["Allow"] = ", ".join(sorted(allowed_methods(app, request.url.path)))
        api_err = ApiError(err.status_code, codes.get(err.status_code, "HTTP_ERROR"), str(err.detail), headers=headers)
        return error_response(request, api_err)

    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        dependency = classify(err)
        if dependency is not None:
            outages: Outages | None = getattr(request.app.state, "outages", None)
            if outages is not None:
                outages.refused(dependency, err)
            return error_response(
                request,
                ApiError(
                    503,
                    CODES[dependency],
                    MESSAGES[dependency],
                    {"dependency": dependency.value},
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                ),
            )
        log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id_of(request))
        return error_response(request, ApiError(500, "INTERNAL", "internal error; quote the request id to support"))

    # Classes that may say a dependency is down (`classify` decides), then everything else.
    for cls in (
        DependencyUnavailable,
        OSError,  # also TimeoutError: a bounded wait for a pooled connection or a statement
        RuntimeError,  # the Temporal client's "Failed client connect"
        RPCError,
        RPCTimeoutOrCancelledError,
        DatabaseError,
        *DATABASE_UNREACHABLE,
        *BROKEN_CONNECTION,
        Exception,
    ):
        app.add_exception_handler(cls, _unexpected)


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Methods of the most specific route templates matching `path` (a static segment such as
    `/api-keys/stats` wins over `/api-keys/{keyId}`), across every included router."""
    by_template: dict[str, set[str]] = {}
    stack: list[Any] = list(app.routes)
    while stack:
        route = stack.pop()
        if hasattr(route, "original_router"):
            stack.extend(route.original_router.routes)
        elif getattr(route, "path_regex", None) is not None and route.path_regex.match(path):
            by_template.setdefault(route.path, set()).update(getattr(route, "methods", None) or ())
    if not by_template:
        return set()
    fewest = min(template.count("{") for template in by_template)
    return set().union(*(m for t, m in by_template.items() if t.count("{") == fewest))
