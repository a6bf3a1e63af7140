"""Reading a JSON body by hand, for routes that accept more than one document shape.

FastAPI's body parameter would report a failed union as errors from every branch; reading the
body ourselves lets a route pick the shape first and then report only that shape's errors.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from clusterflow.api.errors import ApiError


async def read_json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, "MALFORMED_JSON", f"request body is not valid JSON: {err}") from err
    except RecursionError as err:  # `[[[[...` thousands deep: the parser's stack, not ours, gives out
        raise ApiError(400, "MALFORMED_JSON", "request body is nested too deeply") from err
    if not isinstance(value, dict):
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            "request body must be a JSON object",
            [{"field": "body", "message": "must be a JSON object", "type": "object_type"}],
        )
    return value
