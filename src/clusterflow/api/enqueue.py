"""Turning a mutating request into an operation: one transaction, then one workflow start.

Every route that starts an operation builds a command (`api/commands/`: one `OperationCommand`
per kind, whose `prepare` locks, reads, refuses and returns the `OperationPlan`) and goes through
`enqueue`, which answers an `Accepted` value; the route turns it into its 202 with
`accepted_response`.

1. An `Idempotency-Key` seen before replays the first response (422 if the body differs).
2. One transaction, holding a lock on the idempotency key, inserts whatever the route
   prepares (a cluster row), the PENDING operation (the partial unique index refuses a second
   active operation on the cluster: 409), and the idempotency key with the response it will
   replay. Before the operation row, the workflow input is encoded as Temporal's data converter
   will encode it and measured against `max_workflow_input_bytes`: an input Temporal would
   refuse on every try is a 413 `PAYLOAD_TOO_LARGE` (the transaction rolls back: nothing
   written, no key kept), never a 503 a client would retry forever.
3. The workflow starts with ID = operation ID, bounded by `temporal_call_timeout_seconds` (the
   client's interceptor in `api/orchestrator.py`). If that start fails or times out we cannot
   know whether it happened, so we try to withdraw the operation: that succeeds only while it
   is still PENDING and its workflow never began, and then the operation row, what the command
   wrote with it (`abandon`) and the idempotency key are deleted in one transaction; the
   client gets 503 + Retry-After when Temporal was unavailable, or a 500 naming Temporal's
   refusal otherwise. A workflow that did start after all finds no record and ends without
   doing anything (`records.begin_operation`). If the workflow began first, the client gets
   its 202; so it does if the database is down too, so that the withdrawal fails, or if a
   worker's reconciler holds the row to start it itself (the withdrawal never waits for that
   lock, which lasts as long as Temporal hangs): the committed row is then the operation's
   outbox. If this process dies before either, the worker's reconciler starts the workflow from
   the committed row. Its grace (`reconcile_grace_seconds`) must exceed this whole window
   (`temporal_call_timeout_seconds` + `db_acquire_timeout_seconds`), or it takes enqueues that
   the API is about to refuse and they are answered 202 instead.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.exceptions import WorkflowAlreadyStartedError

from clusterflow.api.approvals import IssuedApproval
from clusterflow.api.dependency_faults import DependencyUnavailable, classify
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
        """Delete what `prepare` wrote besides the operation row (already deleted, in the same
        transaction), if the workflow provably never started."""


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
            await _check_payload_size(ctx, workflow_input)
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
        # Bounded by the client's interceptor (`api/orchestrator.py`).
        await start_operation_workflow(
            ctx.temporal, ctx.settings.task_queue, operation_id, plan.workflow_type, workflow_input
        )
    except WorkflowAlreadyStartedError:
        pass  # an earlier try of this very start reached Temporal: it started
    except Exception as err:
        try:
            withdrawn = await _abandon(command)
        except Exception as undo_err:
            if not isinstance(err, DependencyUnavailable) or classify(undo_err) is None:
                raise
            # Neither the start nor the withdrawal went through: the committed row is the
            # operation's outbox, and a worker's reconciler starts it once Temporal answers.
            log.warning(
                "operation %s stays enqueued for the reconciler (start: %s; withdrawal: %s)",
                operation_id,
                err.reason,
                type(undo_err).__name__,
            )
            withdrawn = False
        if withdrawn:
            if isinstance(err, DependencyUnavailable):
                raise
            log.error("Temporal refused the workflow start of operation %s: %s", operation_id, err)
            raise ApiError(
                500,
                "WORKFLOW_START_REFUSED",
                f"the workflow engine refused to start the operation ({type(err).__name__}: {err}); nothing was "
                "enqueued; quote the request id to support",
            ) from err
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


async def _check_payload_size(ctx: OperationContext, workflow_input: dict[str, Any]) -> None:
    """413 for a workflow input larger, as Temporal's data converter encodes it (JSON with
    non-ASCII escaped: an emoji grows from 4 bytes to 12), than Temporal would take."""
    limit = ctx.settings.max_workflow_input_bytes
    payloads = await ctx.temporal.data_converter.encode([workflow_input])
    size = sum(p.ByteSize() for p in payloads)
    if size > limit:
        raise ApiError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the operation's workflow input would be {size} bytes once encoded, over the limit of {limit} bytes; "
            "send fewer or shorter values (non-ASCII characters count up to 12 bytes each)",
            {"limitBytes": limit, "encodedBytes": size},
        )


async def _abandon(command: OperationCommand) -> bool:
    """Withdraw the operation if its workflow provably never began: delete it, what its command
    wrote and its idempotency key, in one transaction; true if it was withdrawn."""
    ctx = command.ctx
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await operations.withdraw_unstarted(conn, command.operation_id):
            return False
        await command.abandon(conn)
        if ctx.idempotency_key:
            await idempotency.forget(conn, ctx.organization_id, ctx.idempotency_key)
        return True
