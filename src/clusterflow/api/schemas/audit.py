"""The audit log's nested documents (the reference API's snake_case names)."""

from __future__ import annotations

from pydantic import BaseModel

from clusterflow.api.schemas.common import Sparse, absent


class AuditDetails(Sparse):
    """What the audit middleware (`api/audit_log.py`) records about a request: never a secret."""

    method: str
    path: str
    query: dict[str, str] | None = absent("Query parameters (secret ones left out)")
    pathParams: dict[str, str] | None = absent("Path parameters (secret ones left out)")
    operationId: str | None = absent("From the answer: the operation it started")
    clusterId: str | None = absent("From the answer")
    id: str | None = absent("From the answer: the resource's ID")
    keyId: str | None = absent("From the answer: the API key's ID")
    decision: str | None = absent("From the answer: an approval decision")
    status: str | None = absent("From the answer: the resource's status")
    errorCode: str | None = absent("A refusal's stable error code")


class TopUser(BaseModel):
    user_id: str | None
    name: str | None
    event_count: int
