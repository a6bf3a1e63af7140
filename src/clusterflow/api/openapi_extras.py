"""What every operation answers besides its own documents, added to the OpenAPI document once
instead of on each route: 400 (an undeclared query parameter), 401, 429, 500 and 503 (a
dependency down, with `Retry-After`) in the error envelope, 413 and 415 where a request body is
taken, the RateLimit headers of authenticated answers, and integer formats (all our integers
fit in int64)."""

from __future__ import annotations

from typing import Any

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
_COMMON = {
    "400": "Malformed request: an undeclared query parameter (`UNKNOWN_QUERY_PARAMETER`, naming it) "
    "or an unreadable body",
    "401": "No API key, or one that is unknown, revoked or expired",
    "429": "Rate limit of the key reached; retry after `Retry-After` seconds",
    "500": "Unexpected failure; quote the X-Request-ID to support",
    "503": "A dependency is unavailable (`DATABASE_UNAVAILABLE`, `ORCHESTRATOR_UNAVAILABLE`); nothing was "
    "changed; retry after `Retry-After` seconds",
}
_UNSECURED = frozenset({"400", "500", "503"})
_WITH_BODY = {
    "413": "Request body, or the workflow input it makes, over the configured limit "
    "(`BODY_TOO_LARGE`, `PAYLOAD_TOO_LARGE`)",
    "415": "A body that is not JSON in UTF-8 (or a merge patch where the operation takes one): "
    "`UNSUPPORTED_MEDIA_TYPE`",
}
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 3600},
}
_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "Requests per second this API process grants the key for this kind of request",
    "RateLimit-Remaining": "Requests left in the current second",
    "RateLimit-Reset": "Seconds until the allowance is full again",
}


def document_common_answers(schema: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            secured = bool(operation.get("security"))
            for code, response in responses.items():
                content = response.get("content", {})
                # A route answering text documents its errors under text/plain; they are JSON.
                if code >= "400" and "text/plain" in content and "ErrorEnvelope" in str(content["text/plain"]):
                    content["application/json"] = content.pop("text/plain")
            for code, description in _COMMON.items():
                if code not in _UNSECURED and not secured:
                    continue
                responses.setdefault(code, {"description": description, "content": _ERROR})
            if "requestBody" in operation:
                for code, description in _WITH_BODY.items():
                    responses.setdefault(code, {"description": description, "content": _ERROR})
            if responses["503"].get("content", {}).get("application/json") == _ERROR["application/json"]:
                responses["503"].setdefault("headers", {})["Retry-After"] = _RETRY_AFTER
            if not secured:
                continue
            responses["429"].setdefault("headers", {})["Retry-After"] = _RETRY_AFTER
            for code, response in responses.items():
                if code.startswith(("2", "4")):
                    headers = response.setdefault("headers", {})
                    for name, description in _RATE_LIMIT_HEADERS.items():
                        headers.setdefault(
                            name,
                            {
                                "description": description,
                                "schema": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100000},
                            },
                        )
    _integer_formats(schema)


def _integer_formats(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer" and "format" not in node:
            node["format"] = "int64"
        for value in node.values():
            _integer_formats(value)
    elif isinstance(node, list):
        for value in node:
            _integer_formats(value)
