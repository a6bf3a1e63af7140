"""Turning a mutating request into an operation: one transaction, then one workflow start.

Every route that starts an operation builds a command (`api/commands/`: one `OperationCommand`
per kind, whose `prepare` locks, reads, refuses and returns the `OperationPlan`) and goes through
`enqueue`, which answers an `Accepted` value; the route turns it into its 202 with
`accepted_response`.

1. An `Idempotency-Key` seen before replays the first response (422 if the body differs).
2. One transaction, holding a lock on the idempotency key, inserts whatever the route
   prepares (a cluster row), the PENDING operation (the partial unique index refuses a second
   active operation on the cluster: 409), and the idempotency key with the response it will
   replay.
3. The workflow starts with ID = operation ID, within `workflow_start_timeout_seconds` (the SDK
   would otherwise retry an unreachable server for ~18 s while the client waits). If that start
   fails or times out we cannot know whether it happened, so we try to abandon the operation:
   that succeeds only while it is still PENDING and unstarted, in which case the client gets
   503 + Retry-After and nothing remains enqueued; otherwise the workflow did start and the
   client gets its 202. If this process dies before either, the worker's reconciler starts the
   workflow from the committed row.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from clusterflow.api.approvals import IssuedApproval
from clusterflow.api.deps import OperationContext
from clusterflow.api.errors import ApiError, request_id_of
from clusterflow.api.schemas.common import OperationAccepted
from clusterflow.contracts.operations import ErrorCode, OperationStatus
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.logs import bind
from clusterflow.records import idempotency, operations
from clusterflow.records.db import Conn
from clusterflow.records.errors import ClusterBusy, IdempotencyKeyReused, NameTaken
from clusterflow.workflows.registry import start_operation_workflow

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class OperationPlan:
    """What a command's `prepare` decided, inside the transaction: the operation row to insert
    and the workflow to start."""

    operation_type: str
    workflow_type: str
    workflow_input: DataclassInstance
    cluster_id: str | None
    cluster_name: str | None
    accepted_message: str
    metadata: dict[str, Any] | None = None
    approval: IssuedApproval | None = None
    # The approval token goes to the requester only if they may decide themselves.
    show_token: bool = False
    # The 202's `data` when the resource's API shape is not the default {operationId, ...}.
    response_data: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class OperationCommand(ABC):
    """One kind of operation, asked for by one request. `enqueue` calls `prepare` in its
    transaction, after the idempotency check, and `abandon` in another if the workflow provably
    never started."""

    ctx: OperationContext
    operation_id: str = field(default_factory=new_operation_id)

    @abstractmethod
    async def prepare(self, conn: Conn) -> OperationPlan:
        """Lock and read what the operation acts on, refuse with an `ApiError`, write what must
        exist with the operation, and return its plan."""

    async def abandon(self, conn: Conn) -> None:  # noqa: B027 - most kinds write nothing else
        """Undo what `prepare` wrote besides the operation row (which is already FAILED)."""


@dataclass(frozen=True)
class Accepted:
    """An enqueued operation, or the first answer replayed for a repeated `Idempotency-Key`."""

    operation_id: str
    cluster_id: str | None
    status: str
    # The envelope as stored for replays (never with the approval token), and its headers.
    body: dict[str, Any]
    headers: dict[str, str]
    status_code: int = 202
    replayed: bool = False
    # Shown once, to a requester who may decide themselves.
    approval_token: str | None = None


def accepted_response(accepted: Accepted, data: BaseModel | dict[str, Any] | None = None) -> JSONResponse:
    """The route's answer: the envelope `enqueue` built (with the approval token when shown), or
    the same envelope around the route's own `data`."""
    envelope_data = accepted.body["data"]
    if data is not None:
        envelope_data = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    elif accepted.approval_token is not None:
        envelope_data = envelope_data | {"approvalToken": accepted.approval_token}
    return JSONResponse(
        accepted.body | {"data": envelope_data}, status_code=accepted.status_code, headers=accepted.headers
    )


def _replay(stored: idempotency.StoredResponse) -> Accepted:
    data = stored.body.get("data") or {}
    location = stored.headers.get("Location", "")
    return Accepted(
        operation_id=str(data.get("operationId") or data.get("id") or location.rsplit("/", 1)[-1]),
        cluster_id=data.get("clusterId"),
        status=str(data.get("status", OperationStatus.PENDING)),
        body=stored.body,
        headers=stored.headers | {"Idempotent-Replayed": "true"},
        status_code=stored.status_code,
        replayed=True,
    )


def _conflict(err: Exception) -> ApiError:
    if isinstance(err, ClusterBusy):
        return ApiError(
            409,
            "CLUSTER_BUSY",
            f"cluster {err.cluster_id} already has operation {err.active_operation_id} in flight; "
            "wait for it or cancel it",
            {"clusterId": err.cluster_id, "activeOperationId": err.active_operation_id},
        )
    if isinstance(err, NameTaken):
        return ApiError(
            409,
            "CLUSTER_NAME_TAKEN",
            f"a cluster named {err.name!r} already exists",
            {"clusterName": err.name, "clusterId": err.cluster_id},
        )
    raise err


async def enqueue(command: OperationCommand, fingerprint: bytes) -> Accepted:
    ctx = command.ctx
    request, principal, key = ctx.request, ctx.principal, ctx.idempotency_key
    org, operation_id = principal.organization_id, command.operation_id
    bind(operation_id=operation_id)
    headers = {"Location": f"/v1/operations/{operation_id}"}
    try:
        async with ctx.pool.acquire() as conn, conn.transaction():
            if key:
                # Requests sharing a key queue here; the first commits, the rest replay it.
                await idempotency.lock(conn, org, key)
                stored = await idempotency.lookup(conn, org, key, fingerprint)
                if stored is not None:
                    return _replay(stored)
            plan = await command.prepare(conn)
            workflow_input = asdict(plan.workflow_input)
            await operations.insert(
                conn,
                operation_id=operation_id,
                organization_id=org,
                cluster_id=plan.cluster_id,
                cluster_name=plan.cluster_name,
                operation_type=plan.operation_type,
                requested_by=principal.key_id,
                idempotency_key=key,
                workflow_type=plan.workflow_type,
                workflow_input=workflow_input,
                metadata=plan.metadata,
                approval=plan.approval.record if plan.approval else None,
                message="accepted, waiting for approval" if plan.approval else None,
            )
            body = _accepted_body(request_id_of(request), operation_id, plan)
            if key:
                # The replayed answer never carries the approval token: it is shown once.
                await idempotency.store(
                    conn,
                    org,
                    key,
                    request.method,
                    request.url.path,
                    fingerprint,
                    idempotency.StoredResponse(202, body, headers),
                )
    except IdempotencyKeyReused as err:
        raise _key_reused(key or "") from err
    except (ClusterBusy, NameTaken) as err:
        raise _conflict(err) from err

    try:
        # The RPC deadline ends the SDK's retries; the task deadline also covers connecting, and
        # we do not wait for a hung call to acknowledge its cancellation.
        limit = ctx.settings.workflow_start_timeout_seconds
        start = asyncio.ensure_future(
            start_operation_workflow(
                ctx.temporal,
                ctx.settings.task_queue,
                operation_id,
                plan.workflow_type,
                workflow_input,
                rpc_timeout=timedelta(seconds=limit),
            )
        )
        done, _ = await asyncio.wait({start}, timeout=limit)
        if not done:
            start.add_done_callback(lambda task: task.cancelled() or task.exception())
            start.cancel()
            raise TimeoutError(f"the workflow start did not answer within {limit:g}s")
        start.result()
    except Exception:
        log.exception("could not start workflow of operation %s", operation_id)
        if await _abandon(command):
            raise ApiError(
                503,
                ErrorCode.ORCHESTRATOR_UNAVAILABLE,
                "the workflow engine is unavailable; nothing was enqueued, retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
    return Accepted(
        operation_id=operation_id,
        cluster_id=plan.cluster_id,
        status=OperationStatus.PENDING,
        body=body,
        headers=headers,
        approval_token=plan.approval.token if plan.approval and plan.show_token else None,
    )


def _accepted_body(request_id: str, operation_id: str, plan: OperationPlan) -> dict[str, Any]:
    data = plan.response_data
    if data is None:
        data = OperationAccepted(
            operationId=operation_id,
            clusterId=plan.cluster_id,
            status=OperationStatus.PENDING,
            approvalRequired=plan.approval is not None,
            approvalExpiresAt=plan.approval.requirement.expires_at if plan.approval else None,
        ).model_dump(exclude_none=True)
    return {"id": request_id, "status": "success", "message": plan.accepted_message, "data": data}


def _key_reused(key: str) -> ApiError:
    return ApiError(
        422,
        "IDEMPOTENCY_KEY_REUSED",
        f"Idempotency-Key {key!r} was already used with a different request",
        {"field": "Idempotency-Key"},
    )


async def _abandon(command: OperationCommand) -> bool:
    """Fail the operation if its workflow provably never ran; true if it was abandoned."""
    ctx = command.ctx
    async with ctx.pool.acquire() as conn, conn.transaction():
        abandoned = await operations.abandon_unstarted(
            conn,
            command.operation_id,
            {
                "code": ErrorCode.ORCHESTRATOR_UNAVAILABLE,
                "message": "the workflow could not be started",
                "retryable": True,
            },
            "not started: the workflow engine was unavailable",
        )
        if not abandoned:
            return False
        await command.abandon(conn)
        if ctx.idempotency_key:
            await idempotency.forget(conn, ctx.organization_id, ctx.idempotency_key)
        return True
