"""Turning a mutating request into an operation: one transaction, then one workflow start.

Every route that starts an operation goes through `enqueue`:

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeAlias

from fastapi import Request
from fastapi.responses import JSONResponse
from temporalio.client import Client

from clusterflow.api.approvals import IssuedApproval
from clusterflow.api.errors import ApiError, request_id_of
from clusterflow.api.schemas.common import OperationAccepted
from clusterflow.contracts.operations import ErrorCode, OperationStatus
from clusterflow.logs import bind
from clusterflow.records import idempotency, operations
from clusterflow.records.db import Conn, DbPool
from clusterflow.records.errors import ClusterBusy, IdempotencyKeyReused, NameTaken
from clusterflow.records.organizations import Principal
from clusterflow.workflows.registry import start_operation_workflow

log = logging.getLogger(__name__)

Prepare: TypeAlias = "Callable[[Conn], Awaitable[None]]"

RETRY_AFTER_SECONDS = 5


@dataclass
class OperationPlan:
    """What a route wants enqueued. `prepare` runs first inside the transaction (it may lock and
    read rows, refuse with an ApiError, and fill in `workflow_input` and `approval`)."""

    operation_id: str
    operation_type: str
    workflow_type: str
    cluster_id: str | None
    cluster_name: str | None
    accepted_message: str
    workflow_input: dict[str, Any] = field(default_factory=dict)
    prepare: Prepare | None = None
    abandon: Prepare | None = None
    metadata: dict[str, Any] | None = None
    approval: IssuedApproval | None = None
    # The approval token goes to the requester only if they may decide themselves.
    show_token: bool = False
    # The 202's `data` when the resource's API shape is not the default {operationId, ...}.
    response_data: dict[str, Any] | None = None


def _replay(stored: idempotency.StoredResponse) -> JSONResponse:
    return JSONResponse(
        stored.body, status_code=stored.status_code, headers=stored.headers | {"Idempotent-Replayed": "true"}
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


async def enqueue(
    request: Request,
    pool: DbPool,
    temporal: Client,
    task_queue: str,
    principal: Principal,
    plan: OperationPlan,
    idempotency_key: str | None,
    fingerprint: bytes,
) -> JSONResponse:
    org = principal.organization_id
    bind(operation_id=plan.operation_id)
    headers = {"Location": f"/v1/operations/{plan.operation_id}"}
    try:
        async with pool.acquire() as conn, conn.transaction():
            if idempotency_key:
                # Requests sharing a key queue here; the first commits, the rest replay it.
                await idempotency.lock(conn, org, idempotency_key)
                stored = await idempotency.lookup(conn, org, idempotency_key, fingerprint)
                if stored is not None:
                    return _replay(stored)
            if plan.prepare is not None:
                await plan.prepare(conn)
            await operations.insert(
                conn,
                operation_id=plan.operation_id,
                organization_id=org,
                cluster_id=plan.cluster_id,
                cluster_name=plan.cluster_name,
                operation_type=plan.operation_type,
                requested_by=principal.key_id,
                idempotency_key=idempotency_key,
                workflow_type=plan.workflow_type,
                workflow_input=plan.workflow_input,
                metadata=plan.metadata,
                approval=plan.approval.record if plan.approval else None,
                message="accepted, waiting for approval" if plan.approval else None,
            )
            body = _accepted_body(request, plan)
            if idempotency_key:
                # The replayed answer never carries the approval token: it is shown once.
                await idempotency.store(
                    conn,
                    org,
                    idempotency_key,
                    request.method,
                    request.url.path,
                    fingerprint,
                    idempotency.StoredResponse(202, body, headers),
                )
    except IdempotencyKeyReused as err:
        raise _key_reused(idempotency_key or "") from err
    except (ClusterBusy, NameTaken) as err:
        raise _conflict(err) from err

    try:
        # The RPC deadline ends the SDK's retries; the task deadline also covers connecting, and
        # we do not wait for a hung call to acknowledge its cancellation.
        limit = request.app.state.settings.workflow_start_timeout_seconds
        start = asyncio.ensure_future(
            start_operation_workflow(
                temporal,
                task_queue,
                plan.operation_id,
                plan.workflow_type,
                plan.workflow_input,
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
        log.exception("could not start workflow of operation %s", plan.operation_id)
        if await _abandon(pool, plan, org, idempotency_key):
            raise ApiError(
                503,
                ErrorCode.ORCHESTRATOR_UNAVAILABLE,
                "the workflow engine is unavailable; nothing was enqueued, retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
    if plan.approval and plan.show_token:
        body = body | {"data": body["data"] | {"approvalToken": plan.approval.token}}
    return JSONResponse(body, status_code=202, headers=headers)


def _accepted_body(request: Request, plan: OperationPlan) -> dict[str, Any]:
    if plan.response_data is not None:
        return {
            "id": request_id_of(request),
            "status": "success",
            "message": plan.accepted_message,
            "data": plan.response_data,
        }
    status = OperationStatus.PENDING
    data = OperationAccepted(
        operationId=plan.operation_id,
        clusterId=plan.cluster_id,
        status=status,
        approvalRequired=plan.approval is not None,
        approvalExpiresAt=plan.approval.requirement.expires_at if plan.approval else None,
    )
    return {
        "id": request_id_of(request),
        "status": "success",
        "message": plan.accepted_message,
        "data": data.model_dump(exclude_none=True),
    }


def _key_reused(key: str) -> ApiError:
    return ApiError(
        422,
        "IDEMPOTENCY_KEY_REUSED",
        f"Idempotency-Key {key!r} was already used with a different request",
        {"field": "Idempotency-Key"},
    )


async def _abandon(pool: DbPool, plan: OperationPlan, org: str, idempotency_key: str | None) -> bool:
    """Fail the operation if its workflow provably never ran; true if it was abandoned."""
    async with pool.acquire() as conn, conn.transaction():
        abandoned = await operations.abandon_unstarted(
            conn,
            plan.operation_id,
            {
                "code": ErrorCode.ORCHESTRATOR_UNAVAILABLE,
                "message": "the workflow could not be started",
                "retryable": True,
            },
            "not started: the workflow engine was unavailable",
        )
        if not abandoned:
            return False
        if plan.abandon is not None:
            await plan.abandon(conn)
        if idempotency_key:
            await idempotency.forget(conn, org, idempotency_key)
        return True
