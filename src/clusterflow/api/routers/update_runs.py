"""Fleet update runs: plan (`?dryRun=true`), start, read, and steer them.

A run is an operation (type UPDATE_RUN): `GET /v1/operations/{runId}` and its event stream work
as for any operation, and `POST /v1/operations/{runId}/cancel` cancels it as this router's cancel
does. The routes here add what only a run has: its stages, groups, gates and clusters, and the
operator controls, which are one Workflow Update (`control`) whose validator refuses an action
that does not apply (pausing a paused run, approving a gate that is not waiting) before it
enters the run's history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from clusterflow.api import control
from clusterflow.api.approvals import issue_if_required
from clusterflow.api.commands.update_run import (
    StartUpdateRun,
    gate_view,
    plan_view,
    resolve_run,
    with_saved_strategy,
)
from clusterflow.api.deps import (
    Editor,
    EditorControl,
    EditorOperation,
    OperationContext,
    Pool,
    Viewer,
    operation_context,
)
from clusterflow.api.enqueue import accepted_response, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.schemas.common import ERRORS, Envelope, OperationAccepted
from clusterflow.api.schemas.update_runs import (
    GateApproval,
    RunClusterView,
    RunControlOutcome,
    RunGroupView,
    RunPlanView,
    RunStageView,
    RunSummary,
    SavedStrategyInput,
    SavedStrategyList,
    SavedStrategyView,
    SkippedClusterView,
    SkipRequest,
    StrategyDoc,
    UpdateRunList,
    UpdateRunListItem,
    UpdateRunRequest,
    UpdateRunView,
)
from clusterflow.contracts.operations import ACTIVE_STATUSES, OperationStatus, OperationType
from clusterflow.contracts.update_runs import (
    ChildStatus,
    ControlAction,
    GateState,
    GateTiming,
    RunControl,
    RunControlResult,
    RunSnapshot,
    RunStatus,
    UnitState,
    group_key,
    stage_key,
)
from clusterflow.ids import new_id
from clusterflow.records import update_runs
from clusterflow.records.update_runs import RunChildRow, RunRow, StrategyRow

router = APIRouter(prefix="/v1", tags=["update-runs"])

# Approving a gate is an owner's decision, as approving an operation is.
OwnerControl = Annotated[OperationContext, Depends(operation_context("owner", idempotent=False))]
DryRun = Annotated[bool, Query(description="Answer the resolved plan; nothing is enqueued")]

# Validator refusals of the `control` Update, as HTTP answers.
_CONTROL_ERRORS = {
    "RUN_NOT_ACTIVE": 409,
    "RUN_NOT_RUNNING": 409,
    "RUN_NOT_PAUSED": 409,
    "ALREADY_FINISHED": 409,
    "GATE_NOT_WAITING": 409,
    "UNKNOWN_STAGE": 404,
    "UNKNOWN_GROUP": 404,
    "UNKNOWN_GATE": 404,
    "APPROVAL_ROLE_TOO_LOW": 403,
}

_CHILD_STATUS = {
    OperationStatus.PENDING: ChildStatus.RUNNING,
    OperationStatus.AWAITING_APPROVAL: ChildStatus.RUNNING,
    OperationStatus.RUNNING: ChildStatus.RUNNING,
    OperationStatus.CANCELLING: ChildStatus.RUNNING,
    OperationStatus.SUCCEEDED: ChildStatus.SUCCEEDED,
    OperationStatus.FAILED: ChildStatus.FAILED,
    OperationStatus.CANCELLED: ChildStatus.CANCELLED,
    OperationStatus.REJECTED: ChildStatus.CANCELLED,
}


@router.post(
    "/update-runs",
    response_model=Envelope[OperationAccepted],
    status_code=202,
    responses=ERRORS | {200: {"model": Envelope[RunPlanView], "description": "the dry run's resolved plan"}},
    summary="Start a fleet update run (an UPDATE_RUN operation), or answer its resolved plan with ?dryRun=true",
)
async def create_update_run(body: UpdateRunRequest, ctx: EditorOperation, dryRun: DryRun = False) -> JSONResponse:
    if dryRun:
        async with ctx.pool.acquire() as conn:
            body = await with_saved_strategy(conn, ctx.organization_id, body)
            resolved = await resolve_run(conn, ctx.organization_id, body, ctx.settings)
            approval = await issue_if_required(
                conn,
                ctx.organization_id,
                OperationType.CLUSTER_UPDATE,
                ctx.settings.approval_window_seconds,
                minor_upgrade=resolved.minor_upgrade,
                caches=ctx.caches,
            )
        view = plan_view(resolved, body, approval is not None, datetime.now(UTC))
        envelope: Envelope[RunPlanView] = Envelope(id=request_id_of(ctx.request), message=view.message, data=view)
        return JSONResponse(envelope.model_dump(mode="json"), status_code=200)
    command = StartUpdateRun(ctx=ctx, document=body)
    return accepted_response(await enqueue(command, ctx.fingerprint(body.model_dump(mode="json"))))


@router.get(
    "/update-runs",
    response_model=Envelope[UpdateRunList],
    responses=ERRORS,
    summary="The organization's update runs, newest first",
)
async def list_update_runs(
    request: Request,
    principal: Viewer,
    pool: Pool,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    pageToken: Annotated[str | None, Query(max_length=200)] = None,
) -> Envelope[UpdateRunList]:
    after = None
    if pageToken:
        try:
            after = update_runs.decode_page_token(pageToken)
        except ValueError as err:
            raise ApiError(
                400, "INVALID_PAGE_TOKEN", "pageToken was not issued by this API", {"field": "pageToken"}
            ) from err
    page = await update_runs.list_page(pool, principal.organization_id, limit=limit, after_id=after)
    items = [
        UpdateRunListItem(
            runId=run.operation.id,
            name=run.name,
            status=_run_status(run),
            operationStatus=OperationStatus(run.operation.status),
            targetVersion=str(run.request["change"]["kubernetesVersion"]),
            createdAt=run.operation.created_at,
            completedAt=run.operation.completed_at,
            message=run.operation.message,
        )
        for run in page.rows
    ]
    return Envelope(
        id=request_id_of(request),
        message=f"{len(items)} runs",
        data=UpdateRunList(runs=items, nextPageToken=page.next_page_token),
    )


def _run_status(run: RunRow) -> RunStatus:
    operation = OperationStatus(run.operation.status)
    if operation not in ACTIVE_STATUSES:
        return RunStatus(operation) if operation != OperationStatus.REJECTED else RunStatus.REJECTED
    if run.snapshot is None:
        return RunStatus.PENDING
    return run.snapshot.status


def _child_view(row: RunChildRow, snapshot: RunSnapshot | None) -> RunClusterView:
    note = {c.cluster_id: c for c in (snapshot.children if snapshot else ())}.get(row.cluster_id)
    if row.status is not None:
        status = _CHILD_STATUS[OperationStatus(row.status)]
        reason = None
    elif note is not None:
        status, reason = note.status, note.reason
    else:
        status, reason = ChildStatus.PLANNED, None
    return RunClusterView(
        clusterId=row.cluster_id,
        clusterName=row.cluster_name,
        operationId=row.operation_id if row.status is not None else None,
        status=status,
        reason=reason,
        targetVersion=row.target_version,
        startedAt=row.started_at,
        completedAt=row.completed_at,
        progressPercentage=row.progress_percentage or 0,
        message=row.message,
    )


def run_view(run: RunRow, children: list[RunChildRow]) -> UpdateRunView:
    snapshot = run.snapshot
    units = {u.key: u for u in (snapshot.units if snapshot else ())}
    gates = {g.id: g for g in (snapshot.gates if snapshot else ())}
    operation_active = run.operation.status in ACTIVE_STATUSES

    def unit(key: str) -> UnitState:
        found = units.get(key, UnitState(key))
        if not operation_active and found.status in ("PENDING", "RUNNING", "WAITING", "SOAKING"):
            return UnitState(key, status="CANCELLED" if run.operation.status != "SUCCEEDED" else found.status)  # type: ignore[arg-type]
        return found

    def gate_views(gate_list: tuple, timing: GateTiming) -> list:  # type: ignore[type-arg]
        views = []
        for gate in gate_list:
            if gate.timing != timing:
                continue
            state = gates.get(gate.id, GateState(gate.id))
            views.append(
                gate_view(gate).model_copy(
                    update={"status": state.status, "opensAt": state.opens_at, "decidedBy": state.decided_by}
                )
            )
        return views

    by_group: dict[tuple[str, str], list[RunClusterView]] = {}
    views = []
    for child in children:
        view = _child_view(child, snapshot)
        views.append(view)
        by_group.setdefault((child.stage, child.group), []).append(view)
    stages = []
    for stage in run.plan.stages:
        s_unit = unit(stage_key(stage.name))
        groups = []
        for group in stage.groups:
            g_unit = unit(group_key(stage.name, group.name))
            groups.append(
                RunGroupView(
                    name=group.name,
                    status=g_unit.status,
                    maxConcurrency=group.max_concurrency,
                    startedAt=g_unit.started_at,
                    completedAt=g_unit.completed_at,
                    beforeGates=gate_views(group.gates, GateTiming.BEFORE),
                    afterGates=gate_views(group.gates, GateTiming.AFTER),
                    clusters=by_group.get((stage.name, group.name), []),
                )
            )
        stages.append(
            RunStageView(
                name=stage.name,
                status=s_unit.status,
                startedAt=s_unit.started_at,
                completedAt=s_unit.completed_at,
                afterStageWaitSeconds=stage.after_stage_wait_seconds,
                failureThreshold=stage.failure_threshold,
                # Counted from the clusters' own operations: the snapshot is written on stage,
                # group and gate changes only.
                succeeded=sum(c.status == ChildStatus.SUCCEEDED for g in groups for c in g.clusters),
                failed=sum(c.status == ChildStatus.FAILED for g in groups for c in g.clusters),
                skipped=sum(c.status == ChildStatus.SKIPPED for g in groups for c in g.clusters),
                beforeGates=gate_views(stage.gates, GateTiming.BEFORE),
                afterGates=gate_views(stage.gates, GateTiming.AFTER),
                groups=groups,
            )
        )
    count = {status: sum(v.status == status for v in views) for status in ChildStatus}
    summary = RunSummary(
        total=len(views),
        succeeded=count[ChildStatus.SUCCEEDED],
        failed=count[ChildStatus.FAILED],
        cancelled=count[ChildStatus.CANCELLED],
        running=count[ChildStatus.RUNNING] + count[ChildStatus.WAITING_BUSY],
        skipped=count[ChildStatus.SKIPPED] + len(run.plan.skipped),
        pending=count[ChildStatus.PLANNED],
    )
    operation = run.operation
    message = snapshot.message if snapshot and snapshot.message and operation_active else operation.message
    return UpdateRunView(
        runId=operation.id,
        name=run.name,
        status=_run_status(run),
        operationStatus=OperationStatus(operation.status),
        message=message,
        targetVersion=str(run.request["change"]["kubernetesVersion"]),
        createdAt=operation.created_at,
        startedAt=operation.started_at,
        completedAt=operation.completed_at,
        isCancelable=operation_active and operation.status != OperationStatus.CANCELLING,
        summary=summary,
        stages=stages,
        skipped=[
            SkippedClusterView(
                clusterId=s.cluster_id, clusterName=s.cluster_name, stage=s.stage, group=s.group, reason=s.reason
            )
            for s in run.plan.skipped
        ],
    )


async def _load(pool: Pool, organization_id: str, run_id: str) -> RunRow:
    run = await update_runs.get(pool, organization_id, run_id)
    if run is None:
        raise not_found("update run", run_id)
    return run


@router.get(
    "/update-runs/{runId}",
    response_model=Envelope[UpdateRunView],
    responses=ERRORS,
    summary="A run with its stages, groups, gates and clusters, each with its status",
)
async def get_update_run(request: Request, runId: str, principal: Viewer, pool: Pool) -> Envelope[UpdateRunView]:
    run = await _load(pool, principal.organization_id, runId)
    view = run_view(run, await update_runs.children(pool, runId))
    return Envelope(id=request_id_of(request), message=view.message or view.status, data=view)


async def _control(ctx: OperationContext, run_id: str, action: RunControl) -> Envelope[RunControlOutcome]:
    await _load(ctx.pool, ctx.organization_id, run_id)
    try:
        result: RunControlResult = await ctx.temporal.get_workflow_handle(run_id).execute_update(
            "control", action, result_type=RunControlResult
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type in _CONTROL_ERRORS:
            raise ApiError(_CONTROL_ERRORS[cause.type], cause.type, cause.message) from err
        raise
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ApiError(409, "RUN_NOT_ACTIVE", f"run {run_id} is not running") from err
        raise ApiError(
            503, "ORCHESTRATOR_UNAVAILABLE", "could not reach the workflow engine; retry", headers={"Retry-After": "5"}
        ) from err
    outcome = RunControlOutcome(runId=run_id, status=result.status, message=result.message)
    return Envelope(id=request_id_of(ctx.request), message=result.message, data=outcome)


def _action(ctx: OperationContext, action: ControlAction, **fields: str | None) -> RunControl:
    return RunControl(action=action, actor=ctx.principal.key_id, actor_role=ctx.principal.role, **fields)


@router.post(
    "/update-runs/{runId}/pause",
    response_model=Envelope[RunControlOutcome],
    responses=ERRORS,
    summary="Pause a run: running clusters finish, no new one starts",
)
async def pause_update_run(runId: str, ctx: EditorControl) -> Envelope[RunControlOutcome]:
    return await _control(ctx, runId, _action(ctx, ControlAction.PAUSE))


@router.post(
    "/update-runs/{runId}/resume",
    response_model=Envelope[RunControlOutcome],
    responses=ERRORS,
    summary="Resume a paused or halted run",
)
async def resume_update_run(runId: str, ctx: EditorControl) -> Envelope[RunControlOutcome]:
    return await _control(ctx, runId, _action(ctx, ControlAction.RESUME))


@router.post(
    "/update-runs/{runId}/skip",
    response_model=Envelope[RunControlOutcome],
    responses=ERRORS,
    summary="Skip a stage or a group: its clusters not yet started are skipped, with its gates and soak",
)
async def skip_update_run_part(runId: str, body: SkipRequest, ctx: EditorControl) -> Envelope[RunControlOutcome]:
    return await _control(ctx, runId, _action(ctx, ControlAction.SKIP, stage=body.stage, group=body.group))


@router.post(
    "/update-runs/{runId}/gates/{gateId}/approve",
    response_model=Envelope[RunControlOutcome],
    responses=ERRORS,
    summary="Approve an approval gate (owner role)",
)
async def approve_update_run_gate(
    runId: str, gateId: str, ctx: OwnerControl, body: GateApproval | None = None
) -> Envelope[RunControlOutcome]:
    comment = body.comment if body else None
    return await _control(ctx, runId, _action(ctx, ControlAction.APPROVE_GATE, gate_id=gateId, comment=comment))


@router.post(
    "/update-runs/{runId}/cancel",
    response_model=Envelope[RunControlOutcome],
    responses=ERRORS,
    summary="Cancel a run: running cluster updates are cancelled and roll back; updated clusters stay updated",
)
async def cancel_update_run(runId: str, ctx: EditorControl) -> Envelope[RunControlOutcome]:
    run = await _load(ctx.pool, ctx.organization_id, runId)
    status, _ = await control.cancel(ctx.pool, ctx.temporal, ctx.settings, ctx.principal, run.operation, False)
    message = "cancel requested: running cluster updates roll back; clusters already updated stay updated"
    outcome = RunControlOutcome(
        runId=runId, status=RunStatus.CANCELLED if status == "CANCELLED" else _run_status(run), message=message
    )
    return Envelope(id=request_id_of(ctx.request), message=message, data=outcome)


# --- saved strategies ---------------------------------------------------------------------------


def _strategy_view(row: StrategyRow) -> SavedStrategyView:
    return SavedStrategyView(
        id=row.id,
        name=row.name,
        strategy=StrategyDoc.model_validate(row.strategy),
        createdBy=row.created_by,
        createdAt=row.created_at,
        updatedAt=row.updated_at,
    )


def _name_taken(name: str) -> ApiError:
    return ApiError(409, "STRATEGY_NAME_TAKEN", f"a strategy named {name!r} already exists", {"name": name})


@router.post(
    "/update-strategies",
    response_model=Envelope[SavedStrategyView],
    status_code=201,
    responses=ERRORS,
    summary="Save an update strategy for later runs (`strategyId` in POST /v1/update-runs)",
)
async def create_update_strategy(
    request: Request, body: SavedStrategyInput, principal: Editor, pool: Pool
) -> Envelope[SavedStrategyView]:
    strategy = body.strategy.model_dump(mode="json", exclude_none=True)
    row = await update_runs.insert_strategy(
        pool, principal.organization_id, new_id("ust"), body.name, strategy, principal.key_id
    )
    if row is None:
        raise _name_taken(body.name)
    return Envelope(id=request_id_of(request), message="strategy saved", data=_strategy_view(row))


@router.get(
    "/update-strategies",
    response_model=Envelope[SavedStrategyList],
    responses=ERRORS,
    summary="The organization's saved update strategies, by name",
)
async def list_update_strategies(request: Request, principal: Viewer, pool: Pool) -> Envelope[SavedStrategyList]:
    rows = await update_runs.list_strategies(pool, principal.organization_id)
    data = SavedStrategyList(strategies=[_strategy_view(r) for r in rows])
    return Envelope(id=request_id_of(request), message=f"{len(rows)} strategies", data=data)


@router.get(
    "/update-strategies/{strategyId}",
    response_model=Envelope[SavedStrategyView],
    responses=ERRORS,
    summary="One saved update strategy",
)
async def get_update_strategy(
    request: Request, strategyId: str, principal: Viewer, pool: Pool
) -> Envelope[SavedStrategyView]:
    row = await update_runs.get_strategy(pool, principal.organization_id, strategyId)
    if row is None:
        raise not_found("update strategy", strategyId)
    return Envelope(id=request_id_of(request), message=row.name, data=_strategy_view(row))


@router.put(
    "/update-strategies/{strategyId}",
    response_model=Envelope[SavedStrategyView],
    responses=ERRORS,
    summary="Replace a saved update strategy (runs already made keep the copy they were planned with)",
)
async def replace_update_strategy(
    request: Request, strategyId: str, body: SavedStrategyInput, principal: Editor, pool: Pool
) -> Envelope[SavedStrategyView]:
    strategy = body.strategy.model_dump(mode="json", exclude_none=True)
    row = await update_runs.replace_strategy(pool, principal.organization_id, strategyId, body.name, strategy)
    if row is False:
        raise _name_taken(body.name)
    if row is None:
        raise not_found("update strategy", strategyId)
    return Envelope(id=request_id_of(request), message="strategy replaced", data=_strategy_view(row))


@router.delete(
    "/update-strategies/{strategyId}",
    status_code=204,
    responses=ERRORS,
    summary="Delete a saved update strategy (runs already made keep their copy)",
)
async def delete_update_strategy(strategyId: str, principal: Editor, pool: Pool) -> Response:
    if not await update_runs.delete_strategy(pool, principal.organization_id, strategyId):
        raise not_found("update strategy", strategyId)
    return Response(status_code=204)
