"""The response envelope and error shapes every route shares."""

from __future__ import annotations

import json
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from clusterflow.contracts.operations import OperationStatus

T = TypeVar("T")


class Strict(BaseModel):
    """Request documents refuse unknown fields (a typo must not be silently ignored) and wrong
    JSON types (`"1"` is not a number, `0` is not a boolean)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _strip_null(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if prop.get("default", ...) is None and branches and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            prop.pop("anyOf")
            prop.pop("default")
            prop.update(rest[0] if len(rest) == 1 else {"anyOf": rest})


class Sparse(BaseModel):
    """A document whose keys are each optional, written by several parties (the API, the
    workflows): an absent key stays absent in the JSON, never `null`. Every key a writer uses is
    declared (see `absent`), so clients get typed attributes instead of a free-form map."""

    model_config = ConfigDict(json_schema_extra=_strip_null)


def absent(description: str | None = None) -> Any:
    """A `Sparse` field: not in the JSON when it has no value."""
    return Field(default=None, exclude_if=lambda value: value is None, description=description)


class Envelope(BaseModel, Generic[T]):
    id: str = Field(description="Request ID, also in the X-Request-ID header")
    status: Literal["success"] = "success"
    message: str
    data: T


def envelope_json(request_id: str, message: str, data_json: bytes) -> bytes:
    """`Envelope(id=..., message=..., data=...)` as `model_dump_json` writes it, around data that
    is already encoded (a cached document)."""
    head = json.dumps({"id": request_id, "status": "success", "message": message}, separators=(",", ":"))
    return head[:-1].encode() + b',"data":' + data_json + b"}"


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable error code")
    details: Any = None


class ErrorEnvelope(BaseModel):
    id: str
    status: Literal["error"] = "error"
    message: str
    error: ErrorBody


class OperationAccepted(BaseModel):
    operationId: str
    clusterId: str | None = None
    status: OperationStatus
    approvalRequired: bool = False
    approvalExpiresAt: str | None = None
    approvalToken: str | None = Field(
        default=None,
        description="Shown once, and only to a requester who may approve (owner); never replayed",
    )


class DryRunResult(BaseModel):
    valid: bool
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope} for code in (400, 401, 403, 404, 409, 422, 429, 503)
}
"""The error answers every route may give, for the OpenAPI document."""
