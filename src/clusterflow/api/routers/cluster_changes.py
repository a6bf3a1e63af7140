"""Changing an existing cluster: update (PATCH, with dry runs and reports), labels and delete.

`PATCH /v1/clusters/{id}` takes two documents, told apart by Content-Type as Kubernetes does:
`application/json` is the reference's K8sClusterUpdate (an operation that changes the cloud),
`application/merge-patch+json` is an RFC 7386 merge patch of the cluster's own `metadata.labels`
(no operation: labels live only in clusterflow, so they change at once, even while an operation
runs). The body is read by hand so each shape reports only its own errors.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from clusterflow.api.approvals import current_policy
from clusterflow.api.body import read_json_object
from clusterflow.api.commands.delete import DeleteCluster
from clusterflow.api.commands.update import UpdateCluster, planned_update
from clusterflow.api.deps import EditorOperation, OperationContext
from clusterflow.api.enqueue import accepted_response, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of, validation_error
from clusterflow.api.schemas.clusters import ClusterMergePatch, ClusterView, K8sClusterUpdate, UpdatePreview
from clusterflow.api.schemas.common import ERRORS, Envelope, OperationAccepted
from clusterflow.api.views import cluster_view
from clusterflow.contracts.labels import MAX_LABELS
from clusterflow.contracts.operations import ClusterState
from clusterflow.planning import PlannedUpdate, plan_view, report_view
from clusterflow.records import clusters
from clusterflow.records.catalog import current_catalog
from clusterflow.records.clusters import ClusterRow

MERGE_PATCH = "application/merge-patch+json"

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


def _unpatchable(body: dict[str, Any]) -> list[dict[str, str]]:
    """A detail for each field of a merge patch other than `metadata.labels`."""
    fields = [key for key in body if key != "metadata"]
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        fields += [f"metadata.{key}" for key in metadata if key != "labels"]
    return [
        {
            "field": name,
            "message": "a merge patch changes only metadata.labels; change the spec with a K8sClusterUpdate "
            "(Content-Type: application/json)",
            "type": "not_patchable",
        }
        for name in fields
    ]


async def _refuse_approval_escape(ctx: OperationContext, row: ClusterRow, changes: dict[str, str | None]) -> None:
    """Labels scope approval rules, so a relabel that would let this cluster's operations skip an
    owner's decision (or need fewer of them) is itself an owner's decision."""
    if ctx.principal.has_role("owner"):
        return
    after = {k: v for k, v in ({**row.labels, **changes}).items() if v is not None}
    async with ctx.pool.acquire() as conn:
        policy = await current_policy(conn, ctx.organization_id, ctx.caches)
    loosened = policy.loosened_by(dict(row.labels), after)
    if loosened:
        raise ApiError(
            403,
            "LABEL_CHANGE_NEEDS_OWNER",
            f"this label change would lower the approval the approval policy requires for {', '.join(loosened)} "
            f"on cluster {row.id}; only an owner may make it",
            {"field": "metadata.labels", "operations": loosened},
        )


async def _patch_labels(ctx: OperationContext, cluster_id: str, body: dict[str, Any]) -> JSONResponse:
    refused = _unpatchable(body)
    if refused:
        names = ", ".join(d["field"] for d in refused)
        raise ApiError(
            422, "VALIDATION_FAILED", f"invalid request: {names} cannot be changed by a merge patch", refused
        )
    try:
        patch = ClusterMergePatch.model_validate(body)
    except ValidationError as err:
        raise validation_error(err.errors()) from err
    metadata = patch.metadata
    org = ctx.organization_id
    row = await clusters.get(ctx.pool, org, cluster_id)
    if row is None:
        raise not_found("cluster", cluster_id)
    if metadata is not None and "labels" in metadata.model_fields_set:
        # RFC 7386: `labels: null` removes the member, that is every label.
        changes = dict(metadata.labels) if metadata.labels is not None else dict.fromkeys(row.labels)
        await _refuse_approval_escape(ctx, row, changes)
        if changes and await clusters.patch_labels(ctx.pool, org, cluster_id, changes, max_labels=MAX_LABELS) is None:
            row = await clusters.get(ctx.pool, org, cluster_id)
            if row is None:
                raise not_found("cluster", cluster_id)
            if row.state == ClusterState.DELETED:
                raise ApiError(
                    409, "CLUSTER_DELETED", f"cluster {cluster_id} is deleted; its labels are kept as they were"
                )
            raise ApiError(
                422,
                "VALIDATION_FAILED",
                f"invalid request: metadata.labels: a cluster has at most {MAX_LABELS} labels",
                [{"field": "metadata.labels", "message": f"at most {MAX_LABELS} labels", "type": "too_many_labels"}],
            )
        row = await clusters.get(ctx.pool, org, cluster_id)
        if row is None:  # pragma: no cover - a cluster row is never deleted
            raise not_found("cluster", cluster_id)
    elif row.state == ClusterState.DELETED:
        raise ApiError(409, "CLUSTER_DELETED", f"cluster {cluster_id} is deleted")
    view = cluster_view(row)
    return JSONResponse(
        {
            "id": request_id_of(ctx.request),
            "status": "success",
            "message": "labels updated",
            "data": view.model_dump(mode="json"),
        }
    )


@router.patch(
    "/{clusterId}",
    status_code=202,
    summary="Update a cluster (version, node groups, tags, provider settings), or change its labels",
    description="`Content-Type: application/json`, a K8sClusterUpdate: with `updateConfig.dryRun` or "
    "`generateReport`, 200 with the plan, preflight checks and report; nothing is enqueued. Otherwise 202 with "
    "a CLUSTER_UPDATE operation. Skipping minor versions, or downgrading without `allowDowngrade`, is refused "
    "(422 UPDATE_REFUSED).\n\n"
    '`Content-Type: application/merge-patch+json`, `{"metadata": {"labels": {...}}}`: changes the '
    "cluster's labels at once (RFC 7386: a key with a null value is removed, `labels: null` removes all) and "
    "answers 200 with the cluster. Any other field is refused (422 naming it); keys and values follow "
    "Kubernetes' label rules.",
    response_model=Envelope[OperationAccepted],
    responses={
        200: {
            "model": Envelope[UpdatePreview] | Envelope[ClusterView],
            "description": "dry run or report (K8sClusterUpdate), or the cluster after a label merge patch",
        },
        **ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/K8sClusterUpdate"}},
                MERGE_PATCH: {"schema": {"$ref": "#/components/schemas/ClusterMergePatch"}},
            },
        }
    },
)
async def update_cluster(clusterId: str, ctx: EditorOperation) -> JSONResponse:
    body = await read_json_object(ctx.request)
    content_type = ctx.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == MERGE_PATCH:
        return await _patch_labels(ctx, clusterId, body)
    try:
        document = K8sClusterUpdate.model_validate(body)
    except ValidationError as err:
        raise validation_error(err.errors()) from err
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
