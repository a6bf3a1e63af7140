"""Operator control of running operations: cancel (graceful or forced) and approval decisions.

Both are mutations on a running workflow, so they talk to Temporal (read paths never do):
cancel asks the workflow to cancel, which runs its own cleanup; force waits a grace period for
that, then terminates the workflow and records that cleanup may be incomplete. A decision is a
Workflow Update whose validator is the authority on the token, its expiry, the role, four eyes
and repeated approvers; the API checks the role first as well, so a viewer never reaches the
workflow.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from clusterflow.api.errors import ApiError
from clusterflow.approval_links import ApprovalLink
from clusterflow.contracts.operations import (
    TERMINAL_STATUSES,
    ClusterState,
    DecideInput,
    DecisionResult,
    OperationStatus,
    OperationType,
)
from clusterflow.records import clusters, operations
from clusterflow.records.db import DbPool, connection_broken
from clusterflow.records.decisions import DecisionDraft
from clusterflow.records.errors import DatabaseError, database_unavailable
from clusterflow.records.operations import OperationRow
from clusterflow.records.organizations import Principal
from clusterflow.settings import Settings

log = logging.getLogger(__name__)

# Validator refusals of the `decide` update, as HTTP answers.
_DECISION_ERRORS = {
    "INVALID_APPROVAL_TOKEN": 403,
    "APPROVAL_ROLE_TOO_LOW": 403,
    "APPROVAL_EXPIRED": 409,
    "NOT_AWAITING_APPROVAL": 409,
    "APPROVAL_PLAN_CHANGED": 409,
    "INVALID_ACTION": 422,
    "APPROVER_IS_REQUESTER": 403,
    "ALREADY_DECIDED": 409,
    "APPROVAL_LINK_USED": 409,
}


def _finished(row: OperationRow) -> ApiError:
    return ApiError(
        409,
        "OPERATION_FINISHED",
        f"operation {row.id} already ended {row.status}; nothing to cancel",
        {"operationId": row.id, "status": row.status},
    )


async def cancel(
    pool: DbPool,
    temporal: Client,
    settings: Settings,
    principal: Principal,
    row: OperationRow,
    force: bool,
) -> tuple[str, bool]:
    """Cancel the operation in `row`; returns (status now, whether it was terminated)."""
    operation_id = row.id
    if row.status in TERMINAL_STATUSES:
        raise _finished(row)
    handle = temporal.get_workflow_handle(operation_id)
    try:
        await handle.cancel()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise ApiError(
                503,
                "ORCHESTRATOR_UNAVAILABLE",
                "could not reach the workflow engine; retry",
                headers={"Retry-After": "5"},
            ) from err
        return await _cancel_without_workflow(pool, row, principal)
    async with pool.acquire() as conn:
        before = await operations.request_cancel(conn, operation_id, principal.key_id, force)
    if before is None:
        current = await operations.get(pool, principal.organization_id, operation_id)
        assert current is not None
        raise _finished(current)
    if not force:
        return OperationStatus.CANCELLING, False
    return await _force(pool, temporal, settings, principal, operation_id)


async def _cancel_without_workflow(pool: DbPool, row: OperationRow, principal: Principal) -> tuple[str, bool]:
    """The workflow does not exist: it never started (the reconciler has not got to it) or it
    already ended. Cancel the record directly if it is still PENDING."""
    async with pool.acquire() as conn, conn.transaction():
        changed = await operations.finish(
            conn,
            row.id,
            OperationStatus.CANCELLED,
            f"cancelled by {principal.key_id} before it started",
            metadata={"cleanedUp": [], "leftBehind": []},
        )
        if changed and row.operation_type == OperationType.CLUSTER_DEPLOY and row.cluster_id:
            await clusters.set_state(conn, row.cluster_id, ClusterState.DELETED)
    if not changed:
        current = await operations.get(pool, principal.organization_id, row.id)
        assert current is not None
        raise _finished(current)
    return OperationStatus.CANCELLED, False


async def _force(
    pool: DbPool, temporal: Client, settings: Settings, principal: Principal, operation_id: str
) -> tuple[str, bool]:
    deadline = time.monotonic() + settings.force_cancel_grace_seconds
    while time.monotonic() < deadline:
        status = await operations.status_of(pool, operation_id)
        if status in TERMINAL_STATUSES:
            return str(status), False
        await asyncio.sleep(0.2)
    grace = settings.force_cancel_grace_seconds
    reason = f"force cancel by {principal.key_id}: graceful cancel did not finish in {grace:g}s"
    try:
        await temporal.get_workflow_handle(operation_id).terminate(reason=reason)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    async with pool.acquire() as conn, conn.transaction():
        target = await operations.target_of(conn, operation_id)
        changed = await operations.finish(
            conn,
            operation_id,
            OperationStatus.CANCELLED,
            "terminated by force cancel; cleanup may be incomplete",
            metadata={"forced": True, "leftBehind": ["unknown: the workflow was terminated before its cleanup ended"]},
        )
        if changed and target is not None and target.cluster_id:
            await clusters.set_state(conn, target.cluster_id, ClusterState.FAILED)
    log.warning("operation %s terminated by force cancel", operation_id)
    return OperationStatus.CANCELLED, True


async def decide(
    pool: DbPool,
    temporal: Client,
    principal: Principal,
    row: OperationRow,
    action: str,
    token: str | None,
    comment: str | None,
    plan_hash: str | None,
    *,
    link: ApprovalLink | None = None,
) -> DecisionResult:
    """Send the decision to the workflow; returns the operation's status after it and the
    approvals still needed.

    An owner decides with their key alone (`token` None); a token, when given, must be the
    operation's; a signed notification link (checked by the caller) is accepted once."""
    if not principal.has_role("owner"):
        raise ApiError(403, "FORBIDDEN", f"approving needs the owner role; the key has {principal.role}")
    # An operation accepted for approval is PENDING until its workflow has begun its record; the
    # workflow takes decisions from its first task, so one sent at once is not refused.
    awaiting = row.status == OperationStatus.AWAITING_APPROVAL or (
        row.status == OperationStatus.PENDING and row.approval_expires_at is not None
    )
    if not awaiting:
        raise ApiError(
            409,
            "NOT_AWAITING_APPROVAL",
            f"operation {row.id} is {row.status}, not awaiting approval",
            {"operationId": row.id, "status": row.status},
        )
    decision = DecideInput(
        token_sha256=hashlib.sha256(token.encode()).hexdigest() if token is not None else None,
        action=action,
        actor=principal.key_id,
        actor_role=principal.role,
        comment=comment,
        plan_hash=plan_hash,
        link_sha256=link.sha256 if link is not None else None,
    )
    # The decision's record is written while the Update is in flight and committed once the
    # workflow has accepted it (`records.decisions.DecisionDraft`), so the client reads its
    # decision as soon as it has our answer, at the cost of one COMMIT after the Update.
    async with pool.acquire() as conn, DecisionDraft(conn, row.id, action, principal.key_id, comment) as draft:
        try:
            result: DecisionResult = await temporal.get_workflow_handle(row.id).execute_update(
                "decide", decision, result_type=DecisionResult
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type in _DECISION_ERRORS:
                raise ApiError(_DECISION_ERRORS[cause.type], cause.type, cause.message) from err
            raise
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ApiError(
                    409, "NOT_AWAITING_APPROVAL", "the operation is no longer waiting for a decision"
                ) from err
            raise ApiError(
                503,
                "ORCHESTRATOR_UNAVAILABLE",
                "could not reach the workflow engine; retry",
                headers={"Retry-After": "5"},
            ) from err
        try:
            await draft.keep(result.status)
        except Exception as err:
            if not _record_unavailable(err):
                raise
            log.warning("decision on %s taken; its record is left to the workflow (%s)", row.id, type(err).__name__)
    return result


def _record_unavailable(err: Exception) -> bool:
    return isinstance(err, DatabaseError) or database_unavailable(err) or connection_broken(err)
