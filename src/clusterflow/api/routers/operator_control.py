"""Operators acting on operations: cancel, approve or reject, and the approval policy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from clusterflow.api import control
from clusterflow.api.approvals import effective_policy
from clusterflow.api.deps import Admin, EditorControl, OperationContext, Owner, Pool, Temporal, Viewer
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.read_caches import ReadCaches
from clusterflow.api.schemas.common import ERRORS, Envelope, Strict
from clusterflow.api.schemas.operations import ApprovalDecision, CancelOutcome, DecisionOutcome
from clusterflow.records import clusters, operations
from clusterflow.records.organizations import approval_policy, set_approval_policy

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


@router.post(
    "/operations/{operationId}/approval",
    response_model=Envelope[DecisionOutcome],
    responses=ERRORS,
    summary="Approve or reject an operation awaiting approval (owner role, with its token)",
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
    status = await control.decide(
        pool, temporal, principal, row, decision.action, decision.token, decision.comment, decision.planHash
    )
    outcome = DecisionOutcome(operationId=operationId, status=status, decision=decision.action)
    return Envelope(id=request_id_of(request), message=f"operation {decision.action.lower()}d", data=outcome)


@router.post(
    "/organizations/{orgId}/clusters/{clusterName}/approval",
    response_model=Envelope[DecisionOutcome],
    responses=ERRORS,
    summary="The reference API's form of an approval decision, addressed by cluster name",
    description="The token travels in the query string, as in the reference API; prefer "
    "`POST /v1/operations/{operationId}/approval`, which keeps it in the body.",
)
async def decide_by_cluster_name(
    request: Request,
    orgId: str,
    clusterName: str,
    principal: Owner,
    pool: Pool,
    temporal: Temporal,
    token: Annotated[str, Query(min_length=1, max_length=200)],
    action: Annotated[str, Query(pattern="^(APPROVE|REJECT)$")],
) -> Envelope[DecisionOutcome]:
    if orgId != principal.organization_id:
        raise not_found("organization", orgId)
    cluster_id = await clusters.live_id_by_name(pool, orgId, clusterName)
    operation_id = None
    if cluster_id is not None:
        operation_id = await operations.awaiting_approval_on_cluster(pool, cluster_id)
    if operation_id is None:
        raise not_found("operation awaiting approval on cluster", clusterName)
    full = await operations.get(pool, orgId, operation_id)
    assert full is not None
    status = await control.decide(pool, temporal, principal, full, action, token, None, None)
    outcome = DecisionOutcome(operationId=operation_id, status=status, decision=action)
    return Envelope(id=request_id_of(request), message=f"operation {action.lower()}d", data=outcome)


class ApprovalPolicy(Strict):
    clusterDeploy: bool | None = None
    clusterUpdate: bool | None = None
    minorVersionUpgrade: bool | None = None
    clusterDelete: bool | None = None


class ApprovalPolicyView(BaseModel):
    clusterDeploy: bool
    clusterUpdate: bool
    minorVersionUpgrade: bool
    clusterDelete: bool


@router.get(
    "/organizations/{orgId}/approval-policy",
    response_model=Envelope[ApprovalPolicyView],
    responses=ERRORS,
    tags=["organizations"],
    summary="Which operations wait for an owner's approval",
)
async def get_policy(request: Request, orgId: str, principal: Viewer, pool: Pool) -> Envelope[ApprovalPolicyView]:
    if orgId != principal.organization_id:
        raise not_found("organization", orgId)
    policy = effective_policy(await approval_policy(pool, orgId))
    return Envelope(id=request_id_of(request), message="approval policy", data=ApprovalPolicyView(**policy))


@router.put(
    "/organizations/{orgId}/approval-policy",
    response_model=Envelope[ApprovalPolicyView],
    responses=ERRORS,
    tags=["organizations"],
    summary="Change which operations wait for approval (admin role); omitted keys keep their value",
)
async def put_policy(
    request: Request, orgId: str, change: ApprovalPolicy, principal: Admin, pool: Pool
) -> Envelope[ApprovalPolicyView]:
    if orgId != principal.organization_id:
        raise not_found("organization", orgId)
    policy = effective_policy(await approval_policy(pool, orgId)) | change.model_dump(exclude_none=True)
    await set_approval_policy(pool, orgId, policy)
    # Other API processes hear of it by NOTIFY; this one forgets it before answering.
    caches: ReadCaches = request.app.state.caches
    caches.approval_policy_changed(orgId)
    return Envelope(id=request_id_of(request), message="approval policy updated", data=ApprovalPolicyView(**policy))
