"""Changing an existing cluster: update (PATCH, with dry runs and reports) and delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from clusterflow.api.commands.delete import DeleteCluster
from clusterflow.api.commands.update import UpdateCluster, planned_update
from clusterflow.api.deps import EditorOperation
from clusterflow.api.enqueue import accepted_response, enqueue
from clusterflow.api.errors import not_found, request_id_of
from clusterflow.api.schemas.clusters import K8sClusterUpdate, UpdatePreview
from clusterflow.api.schemas.common import ERRORS, Envelope, OperationAccepted
from clusterflow.planning import PlannedUpdate, plan_view, report_view
from clusterflow.records import clusters
from clusterflow.records.catalog import current_catalog
from clusterflow.records.clusters import ClusterRow

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])


def _preview(row: ClusterRow, plan: PlannedUpdate, with_report: bool) -> UpdatePreview:
    view = plan_view(plan, row.name, row.provider, row.provisioner_type, row.region)
    nodes = sum(int(g.get("minNode", 0)) for g in row.worker_nodes or [])
    return UpdatePreview(
        clusterId=row.id,
        status=row.state,
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
async def update_cluster(clusterId: str, document: K8sClusterUpdate, ctx: EditorOperation) -> JSONResponse:
    config = document.spec.updateConfig
    if config.dryRun or config.generateReport:
        row = await clusters.get(ctx.pool, ctx.organization_id, clusterId)
        if row is None:
            raise not_found("cluster", clusterId)
        update = planned_update(row, document, await current_catalog(ctx.pool))
        preview = _preview(row, update, with_report=config.generateReport)
        return JSONResponse(
            {
                "id": request_id_of(ctx.request),
                "status": "success",
                "message": preview.message,
                "data": preview.model_dump(mode="json"),
            }
        )
    command = UpdateCluster(ctx=ctx, cluster_id=clusterId, document=document)
    return accepted_response(await enqueue(command, ctx.fingerprint(document.model_dump(mode="json"))))


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
    clusterId: str,
    ctx: EditorOperation,
    credentials: Annotated[dict[str, Any] | None, Body(description="Accepted for compatibility; unused")] = None,
) -> JSONResponse:
    command = DeleteCluster(ctx=ctx, cluster_id=clusterId)
    return accepted_response(await enqueue(command, ctx.fingerprint({})))
