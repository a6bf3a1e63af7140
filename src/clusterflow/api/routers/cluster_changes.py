"""Changing an existing cluster: update (PATCH, with dry runs and reports) and delete."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse

from clusterflow.api import approvals
from clusterflow.api.cluster_lock import lock_cluster_for
from clusterflow.api.deps import AppSettings, Editor, Pool, Temporal
from clusterflow.api.enqueue import OperationPlan, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.routers.clusters import execution_policy, normalized_spec
from clusterflow.api.routers.registration import registered_cluster_delete_refused
from clusterflow.api.schemas.clusters import K8sClusterUpdate, UpdatePreview, update_request
from clusterflow.api.schemas.common import ERRORS, Envelope, OperationAccepted
from clusterflow.catalog import kubernetes_versions
from clusterflow.catalog.spec_checks import check_deploy_spec
from clusterflow.contracts.changes import ClusterShape
from clusterflow.contracts.cluster import ClusterDefinition, NodeGroupSpec
from clusterflow.contracts.operations import DeleteInput, OperationType, UpdateInput
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.planning import PlannedUpdate, plan_update, plan_view, report_view
from clusterflow.records import clusters, idempotency
from clusterflow.records.db import Conn
from clusterflow.records.registrations import is_registered
from clusterflow.workflows.registry import WORKFLOW_TYPES

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255, description="Replays the first response")
]


def _plan(row: Any, document: K8sClusterUpdate) -> PlannedUpdate:
    """The update plan, checked against the provider's catalog (versions, machine types, zones)."""
    versions = kubernetes_versions(row["provider"], row["provisioner_type"])
    request = update_request(document.spec)
    return plan_update(
        cluster_id=row["id"],
        provider=row["provider"],
        before=recorded_shape(row),
        request=request,
        supported_versions=list(versions.supported_versions) if versions else [],
        group_problems=_group_problems(row, request.node_groups),
        upgrade_warnings=dict(versions.upgrade_warnings) if versions else {},
    )


_DEPLOYED_GROUPS = "spec.clusterSpec.dataPlane.nodeGroups"


def _group_problems(row: Any, groups: tuple[NodeGroupSpec, ...] | None) -> tuple[str, ...]:
    """The requested node groups through the deploy checks, as if the cluster were deployed with
    them: a group an update adds is judged exactly as one a deploy creates."""
    if not groups:
        return ()
    spec = normalized_spec(row)
    spec["clusterSpec"]["dataPlane"]["nodeGroups"] = [g.to_document() for g in groups]
    return tuple(
        f"spec.nodeGroups{p.field.removeprefix(_DEPLOYED_GROUPS)}: {p.message}"
        for p in check_deploy_spec(spec)
        if p.field.startswith(_DEPLOYED_GROUPS)
    )


def recorded_shape(row: Any) -> ClusterShape:
    """The cluster as its record states it: what an update plans from."""
    return ClusterShape(
        kubernetes_version=row["kubernetes_version"],
        node_groups=tuple(NodeGroupSpec.from_document(g) for g in row["worker_nodes"] or ()),
        tags={str(k): str(v) for k, v in (row["tags"] or {}).items()},
    )


def _preview(row: Any, plan: PlannedUpdate, with_report: bool) -> UpdatePreview:
    view = plan_view(plan, row["name"], row["provider"], row["provisioner_type"], row["region"])
    nodes = sum(int(g.get("minNode", 0)) for g in row["worker_nodes"] or [])
    return UpdatePreview(
        clusterId=row["id"],
        status=row["state"],
        message="validation passed" if plan.passed else "the update is blocked: " + "; ".join(plan.errors),
        validationPassed=plan.passed,
        errors=plan.errors,
        warnings=plan.warnings,
        preflightChecks=view["preflightChecks"],
        upgradePlan=view,
        upgradeReport=report_view(plan, nodes) if with_report else None,
        planHash=plan.plan_hash,
    )


@router.patch(
    "/{clusterId}",
    status_code=202,
    summary="Update a cluster (version, node groups, tags, provider settings)",
    description="With `updateConfig.dryRun` or `generateReport`: 200 with the plan, preflight checks and "
    "report; nothing is enqueued. Otherwise 202 with a CLUSTER_UPDATE operation. Skipping minor "
    "versions, or downgrading without `allowDowngrade`, is refused (422 UPDATE_REFUSED).",
    response_model=Envelope[OperationAccepted],
    responses={200: {"model": Envelope[UpdatePreview], "description": "dry run or report"}, **ERRORS},
)
async def update_cluster(
    request: Request,
    clusterId: str,
    document: K8sClusterUpdate,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    config = document.spec.updateConfig
    if config.dryRun or config.generateReport:
        row = await clusters.get(pool, principal.organization_id, clusterId)
        if row is None:
            raise not_found("cluster", clusterId)
        preview = _preview(row, _plan(row, document), with_report=config.generateReport)
        return JSONResponse(
            {
                "id": request_id_of(request),
                "status": "success",
                "message": preview.message,
                "data": preview.model_dump(mode="json"),
            }
        )

    operation_id = new_operation_id()
    plan = OperationPlan(
        operation_id=operation_id,
        operation_type=OperationType.CLUSTER_UPDATE,
        workflow_type=WORKFLOW_TYPES[OperationType.CLUSTER_UPDATE],
        cluster_id=clusterId,
        cluster_name=None,
        accepted_message="update accepted",
        show_token=principal.has_role("owner"),
    )

    async def prepare(conn: Conn) -> None:
        locked = await lock_cluster_for(conn, principal.organization_id, clusterId, OperationType.CLUSTER_UPDATE)
        row = locked.row
        if is_registered(row):
            raise ApiError(
                409,
                "CLUSTER_IS_REGISTERED",
                f"cluster {row['name']} is registered through an agent: its owners change it, not clusterflow",
                {"clusterId": row["id"]},
            )
        update = _plan(row, document)
        if not update.passed:
            raise ApiError(
                422,
                "UPDATE_REFUSED",
                "the update is refused: " + "; ".join(update.errors),
                {"errors": update.errors, "preflightChecks": [c.view() for c in update.checks]},
            )
        plan.approval = await approvals.issue_if_required(
            conn,
            principal.organization_id,
            OperationType.CLUSTER_UPDATE,
            settings.approval_window_seconds,
            minor_upgrade=update.is_minor_upgrade,
            plan_hash=update.plan_hash,
            caches=request.app.state.caches,
        )
        plan.cluster_name = row["name"]
        plan.metadata = {"planHash": update.plan_hash, "targetVersion": update.target_version or ""}
        spec = normalized_spec(row)
        plan.workflow_input = asdict(
            UpdateInput(
                operation_id=operation_id,
                organization_id=principal.organization_id,
                cluster_id=clusterId,
                cluster_name=row["name"],
                provider=row["provider"],
                region=row["region"],
                spec=spec,
                plan=update.plan,
                policy=execution_policy(settings),
                approval=plan.approval.requirement if plan.approval else None,
                definition=ClusterDefinition.from_spec(spec),
            )
        )

    plan.prepare = prepare
    body = document.model_dump(mode="json")
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, body)
    return await enqueue(request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint)


@router.delete(
    "/{clusterId}",
    status_code=202,
    summary="Delete a cluster and all its cloud resources",
    description="Tears down node groups, control plane and network in reverse order. May wait for an owner's "
    "approval (organization policy). A deploy still running is cancelled first (pre-empted).",
    response_model=Envelope[OperationAccepted],
    responses=ERRORS,
)
async def delete_cluster(
    request: Request,
    clusterId: str,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
    credentials: Annotated[dict[str, Any] | None, Body(description="Accepted for compatibility; unused")] = None,
) -> JSONResponse:
    operation_id = new_operation_id()
    plan = OperationPlan(
        operation_id=operation_id,
        operation_type=OperationType.CLUSTER_DELETE,
        workflow_type=WORKFLOW_TYPES[OperationType.CLUSTER_DELETE],
        cluster_id=clusterId,
        cluster_name=None,
        accepted_message="delete accepted",
        show_token=principal.has_role("owner"),
    )

    async def prepare(conn: Conn) -> None:
        locked = await lock_cluster_for(conn, principal.organization_id, clusterId, OperationType.CLUSTER_DELETE)
        row = locked.row
        if is_registered(row):
            raise registered_cluster_delete_refused(row)
        plan.approval = await approvals.issue_if_required(
            conn,
            principal.organization_id,
            OperationType.CLUSTER_DELETE,
            settings.approval_window_seconds,
            caches=request.app.state.caches,
        )
        plan.cluster_name = row["name"]
        plan.metadata = {"preempts": locked.preempts} if locked.preempts else None
        spec = normalized_spec(row)
        plan.workflow_input = asdict(
            DeleteInput(
                operation_id=operation_id,
                organization_id=principal.organization_id,
                cluster_id=clusterId,
                cluster_name=row["name"],
                provider=row["provider"],
                region=row["region"],
                spec=spec,
                policy=execution_policy(settings),
                approval=plan.approval.requirement if plan.approval else None,
                preempts=locked.preempts,
                previous_state=row["state"],
                definition=ClusterDefinition.from_spec(spec),
            )
        )

    plan.prepare = prepare
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, {})
    return await enqueue(request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint)
