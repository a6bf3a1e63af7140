"""What every operation answers besides its own documents, added to the OpenAPI document once
instead of on each route: 401, 429 and 500 in the error envelope, the RateLimit headers of
authenticated answers, and integer formats (all our integers fit in int64)."""

from __future__ import annotations

from typing import Any

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
_COMMON = {
    "401": "No API key, or one that is unknown, revoked or expired",
    "429": "Rate limit of the key reached; retry after `Retry-After` seconds",
    "500": "Unexpected failure; quote the X-Request-ID to support",
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
                if code != "500" and not secured:
                    continue
                responses.setdefault(code, {"description": description, "content": _ERROR})
            if not secured:
                continue
            responses["429"].setdefault("headers", {})["Retry-After"] = {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 3600},
            }
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
