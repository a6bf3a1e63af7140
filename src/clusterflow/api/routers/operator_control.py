"""Operators acting on operations: cancel, approve or reject, and the approval policy.

Any owner decides with their own key (`POST /v1/operations/{id}/approval`, no token); the
reference's route by cluster name takes the requester's token or a notification's signed link
(`clusterflow.approval_links`) and, as in the reference, an owner's key too. `GET /v1/approvals`
lists what the calling key may still decide. The policy's shape and evaluation are in
`api/approvals.py`; every decision and refusal is audited by `api/audit_log.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from clusterflow import approval_links
from clusterflow.api import control
from clusterflow.api.approvals import MAX_APPROVALS, Policy, PolicyError, parse_policy
from clusterflow.api.deps import Admin, AppSettings, EditorControl, OperationContext, Owner, Pool, Temporal, Viewer
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.read_caches import ReadCaches
from clusterflow.api.schemas.common import ERRORS, Envelope, Strict
from clusterflow.api.schemas.operations import (
    ApprovalDecision,
    CancelOutcome,
    DecisionOutcome,
    Operation,
    OperationPage,
)
from clusterflow.api.views import operation_view
from clusterflow.contracts.operations import DecisionResult, OperationStatus
from clusterflow.records import clusters, operations
from clusterflow.records.db import DbPool
from clusterflow.records.organizations import approval_policy, set_approval_policy
from clusterflow.settings import Settings

router = APIRouter(prefix="/v1", tags=["operations"])

Force = Annotated[bool, Query(description="Terminate after the graceful cancel's grace period (admin role)")]


async def _cancel(ctx: OperationContext, operation_id: str, force: bool) -> Envelope[CancelOutcome]:
    principal = ctx.principal
    if force and not principal.has_role("admin"):
        raise ApiError(403, "FORBIDDEN", f"force cancel needs the admin role; the key has {principal.role}")
    row = await operations.get(ctx.pool, principal.organization_id, operation_id)
    if row is None:
        raise not_found("operation", operation_id)
    status, terminated = await control.cancel(ctx.pool, ctx.temporal, ctx.settings, principal, row, force)
    outcome = CancelOutcome(operationId=operation_id, status=status, forced=force, terminated=terminated)
    return Envelope(id=request_id_of(ctx.request), message=f"operation {status.lower()}", data=outcome)


@router.post(
    "/operations/{operationId}/cancel",
    response_model=Envelope[CancelOutcome],
    responses=ERRORS,
    summary="Cancel an operation: its workflow cleans up and ends CANCELLED",
)
async def cancel_operation(operationId: str, ctx: EditorControl, force: Force = False) -> Envelope[CancelOutcome]:
    return await _cancel(ctx, operationId, force)


@router.post(
    "/clusters/{clusterId}/cancel",
    response_model=Envelope[CancelOutcome],
    responses=ERRORS,
    summary="Cancel the cluster's running operation",
)
async def cancel_cluster_operation(clusterId: str, ctx: EditorControl, force: Force = False) -> Envelope[CancelOutcome]:
    cluster = await clusters.get(ctx.pool, ctx.organization_id, clusterId)
    if cluster is None:
        raise not_found("cluster", clusterId)
    if cluster.active_operation_id is None:
        raise ApiError(409, "NO_ACTIVE_OPERATION", f"cluster {clusterId} has no operation in flight")
    return await _cancel(ctx, cluster.active_operation_id, force)


def _decided(request: Request, operation_id: str, result: DecisionResult, action: str) -> Envelope[DecisionOutcome]:
    outcome = DecisionOutcome(
        operationId=operation_id,
        status=OperationStatus(result.status),
        decision="APPROVE" if action == "APPROVE" else "REJECT",
        remaining=result.remaining,
    )
    verb = "approved" if action == "APPROVE" else "rejected"
    message = f"operation {verb}" + (f"; {result.remaining} more approval(s) needed" if result.remaining else "")
    return Envelope(id=request_id_of(request), message=message, data=outcome)


@router.post(
    "/operations/{operationId}/approval",
    response_model=Envelope[DecisionOutcome],
    responses=ERRORS,
    summary="Approve or reject an operation awaiting approval (owner role; no token needed)",
    description="Any owner of the organization decides with their own key. Under the policy's "
    "`requireDifferentApprover` the requester cannot decide (403 `APPROVER_IS_REQUESTER`); an owner "
    "who already decided cannot again (409 `ALREADY_DECIDED`). With `approvalsRequired` above 1 an "
    "approval answers `AWAITING_APPROVAL` and `remaining` until the last one; one rejection ends it.",
)
async def decide_operation(
    request: Request,
    operationId: str,
    decision: ApprovalDecision,
    principal: Owner,
    pool: Pool,
    temporal: Temporal,
) -> Envelope[DecisionOutcome]:
    row = await operations.get(pool, principal.organization_id, operationId)
    if row is None:
        raise not_found("operation", operationId)
    result = await control.decide(
        pool, temporal, principal, row, decision.action, decision.token, decision.comment, decision.planHash
    )
    return _decided(request, operationId, result, decision.action)


@router.post(
    "/organizations/{orgId}/clusters/{clusterName}/approval",
    response_model=Envelope[DecisionOutcome],
    responses=ERRORS,
    summary="The reference API's form of an approval decision, addressed by cluster name",
    description="The token travels in the query string, as in the reference API: the requester's "
    "approval token, or the token of a signed link from an `operation.awaiting_approval` "
    "notification (one use; it expires with the approval window). An owner's key is needed either "
    "way. `action` is APPROVE or REJECT, in any case; prefer `POST /v1/operations/{operationId}/approval`.",
)
async def decide_by_cluster_name(
    request: Request,
    orgId: str,
    clusterName: str,
    principal: Owner,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    token: Annotated[str, Query(min_length=1, max_length=200)],
    action: Annotated[str, Query(pattern="^(?i:APPROVE|REJECT)$", description="APPROVE or REJECT, any case")],
) -> Envelope[DecisionOutcome]:
    if orgId != principal.organization_id:
        raise not_found("organization", orgId)
    action = action.upper()
    cluster_id = await clusters.live_id_by_name(pool, orgId, clusterName)
    operation_id = None
    if cluster_id is not None:
        operation_id = await operations.awaiting_approval_on_cluster(pool, cluster_id)
    if operation_id is None:
        if token.startswith(approval_links.PREFIX):
            await _refuse_spent_link(pool, settings, orgId, clusterName, token, action)
        raise not_found("operation awaiting approval on cluster", clusterName)
    full = await operations.get(pool, orgId, operation_id)
    assert full is not None
    link = None
    if token.startswith(approval_links.PREFIX):
        link = approval_links.check(settings, token, operation_id, action)
        if link is None:
            raise ApiError(
                403, "INVALID_APPROVAL_TOKEN", "the approval link is not valid for this operation and action"
            )
        if link.expires_at <= datetime.now(UTC):
            raise ApiError(409, "APPROVAL_EXPIRED", "the approval link has expired with the approval window")
    result = await control.decide(
        pool, temporal, principal, full, action, None if link else token, None, None, link=link
    )
    return _decided(request, operation_id, result, action)


async def _refuse_spent_link(
    pool: DbPool, settings: Settings, organization_id: str, cluster_name: str, token: str, action: str
) -> None:
    """A genuine link whose operation no longer waits (decided, expired, its cluster deleted
    since) answers 409, as a second use of a link should; anything else falls through to 404."""
    for operation_id in await operations.recent_ids_by_cluster_name(pool, organization_id, cluster_name):
        if approval_links.check(settings, token, operation_id, action) is not None:
            raise ApiError(
                409,
                "NOT_AWAITING_APPROVAL",
                f"operation {operation_id} is no longer awaiting approval: the link has been used, "
                "or the operation was decided another way",
                {"operationId": operation_id},
            )


@router.get(
    "/approvals",
    response_model=Envelope[OperationPage],
    responses=ERRORS,
    tags=["operations"],
    summary="Operations awaiting approval that the calling key may decide",
    description="Oldest first: operations awaiting approval that this key has not decided yet, "
    "without its own requests when they require a different approver. Empty below the owner role. "
    "`GET /v1/operations?status=AWAITING_APPROVAL` lists every waiting operation.",
)
async def awaiting_my_decision(
    request: Request,
    principal: Viewer,
    pool: Pool,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> Envelope[OperationPage]:
    rows: list[operations.OperationRow] = []
    if principal.has_role("owner"):
        rows = await operations.awaiting_decision_by(pool, principal.organization_id, principal.key_id, limit)
    views: list[Operation] = [operation_view(r) for r in rows]
    page = OperationPage(operations=views, totalCount=len(views))
    return Envelope(id=request_id_of(request), message="operations awaiting your decision", data=page)


# --- policy -------------------------------------------------------------------------------------

OperationKind = Literal["clusterDeploy", "clusterUpdate", "minorVersionUpgrade", "clusterDelete"]


class ApprovalPolicyRule(Strict):
    """On clusters whose labels match, these operations wait (the first matching rule decides)."""

    name: str | None = Field(default=None, min_length=1, max_length=100, description="Recorded on operations")
    labelSelector: str | None = Field(
        default=None, max_length=4096, description="Kubernetes label selector, e.g. `env=prod,team in (a,b)`"
    )
    environment: str | None = Field(default=None, max_length=63, description="Short for `env=<environment>`")
    operations: list[OperationKind] = Field(
        max_length=4, description="The kinds that wait on matching clusters; [] means none"
    )
    approvalsRequired: int | None = Field(default=None, ge=1, le=MAX_APPROVALS)
    requireDifferentApprover: bool | None = None


class ApprovalPolicyRuleView(BaseModel):
    name: str
    labelSelector: str
    operations: list[OperationKind]
    approvalsRequired: int | None = None
    requireDifferentApprover: bool | None = None


class ApprovalPolicy(Strict):
    clusterDeploy: bool | None = None
    clusterUpdate: bool | None = None
    minorVersionUpgrade: bool | None = None
    clusterDelete: bool | None = None
    approvalsRequired: int | None = Field(
        default=None, ge=1, le=MAX_APPROVALS, description="Distinct owners who must approve"
    )
    requireDifferentApprover: bool | None = Field(
        default=None, description="Four eyes: the requester cannot decide their own operation, whatever their role"
    )
    rules: list[ApprovalPolicyRule] | None = Field(
        default=None, max_length=50, description="Label-scoped rules, first match wins; replaces the list"
    )


class ApprovalPolicyView(BaseModel):
    clusterDeploy: bool
    clusterUpdate: bool
    minorVersionUpgrade: bool
    clusterDelete: bool
    approvalsRequired: int
    requireDifferentApprover: bool
    rules: list[ApprovalPolicyRuleView]


def _view(policy: Policy) -> ApprovalPolicyView:
    return ApprovalPolicyView.model_validate(policy.document())


@router.get(
    "/organizations/{orgId}/approval-policy",
    response_model=Envelope[ApprovalPolicyView],
    responses=ERRORS,
    tags=["organizations"],
    summary="Which operations wait for owners' approval, how many, and by whom",
)
async def get_policy(request: Request, orgId: str, principal: Viewer, pool: Pool) -> Envelope[ApprovalPolicyView]:
    if orgId != principal.organization_id:
        raise not_found("organization", orgId)
    policy = parse_policy(await approval_policy(pool, orgId))
    return Envelope(id=request_id_of(request), message="approval policy", data=_view(policy))


@router.put(
    "/organizations/{orgId}/approval-policy",
    response_model=Envelope[ApprovalPolicyView],
    responses=ERRORS,
    tags=["organizations"],
    summary="Change the approval policy (admin role); omitted keys keep their value",
    description="Operations already waiting keep the rules they were accepted under.",
)
async def put_policy(
    request: Request, orgId: str, change: ApprovalPolicy, principal: Admin, pool: Pool
) -> Envelope[ApprovalPolicyView]:
    if orgId != principal.organization_id:
        raise not_found("organization", orgId)
    stored: dict[str, Any] = parse_policy(await approval_policy(pool, orgId)).document()
    update = change.model_dump(exclude_none=True)
    if change.rules is not None:
        update["rules"] = [r.model_dump(exclude_none=True) for r in change.rules]
    try:
        policy = parse_policy(stored | update)
    except PolicyError as err:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            f"invalid request: {err.field}: {err}",
            [{"field": err.field, "message": str(err), "type": "value_error"}],
        ) from None
    await set_approval_policy(pool, orgId, policy.document())
    # Other API processes hear of it by NOTIFY; this one forgets it before answering.
    caches: ReadCaches = request.app.state.caches
    caches.approval_policy_changed(orgId)
    return Envelope(id=request_id_of(request), message="approval policy updated", data=_view(policy))
