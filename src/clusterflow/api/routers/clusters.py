"""Clusters: deploy (and its dry run), list, get, spec, operation history, progress.

A deploy (real or dry run) is the `DeployCluster` command (`api/commands/deploy.py`), whose
checks the dry run shares, so it answers exactly what the real call would.

The list keeps the reference's shape (`data` is the array of clusters); its keyset page is
opt-in (`limit`), the next page's token travels in the `X-Next-Page-Token` header, and a
`labelSelector` is parsed here (`contracts/labels.py`) and filtered in PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from clusterflow.api.body import read_json_object
from clusterflow.api.commands.deploy import DeployCluster
from clusterflow.api.deps import AppSettings, EditorOperation, Pool, Viewer
from clusterflow.api.enqueue import accepted_response, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.listing import operation_page, operations_message
from clusterflow.api.schemas.clusters import (
    ClusterSpecDocument,
    ClusterView,
    DeployDryRunResult,
    cluster_spec_document,
)
from clusterflow.api.schemas.common import (
    ERRORS,
    Envelope,
    OperationAccepted,
    envelope_json,
)
from clusterflow.api.schemas.operations import Operation, OperationPage
from clusterflow.api.views import cluster_view, operation_view
from clusterflow.contracts.labels import MAX_SELECTOR_LENGTH, Selector, SelectorError, parse_selector
from clusterflow.records import clusters, operations
from clusterflow.records.clusters import ClusterRow

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])


@router.post(
    "",
    status_code=202,
    summary="Deploy a cluster",
    description="Validates a K8sCluster document, records a CLUSTER_DEPLOY operation and starts its "
    "workflow. Answers 202 with the operation ID at once. `?dryRun=true` validates only (200), "
    "with the same checks and refusals as the real call: the spec against the provider's catalog, "
    "and the cloud account (or project, subscription) the deploy would act through. A spec the "
    "provider would refuse is a 422 `INVALID_SPEC` naming each field. "
    "The reference's legacy flat body (the spec alone) is accepted too.",
    response_model=Envelope[OperationAccepted],
    responses={200: {"model": Envelope[DeployDryRunResult], "description": "dry run result"}, **ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/K8sCluster"},
                            {"$ref": "#/components/schemas/ClusterSpec"},
                        ]
                    }
                }
            },
        }
    },
)
async def deploy_cluster(
    ctx: EditorOperation, dryRun: Annotated[bool, Query(description="Validate without creating anything")] = False
) -> JSONResponse:
    body = await read_json_object(ctx.request)
    command = DeployCluster.from_body(ctx, body)
    if dryRun:
        return JSONResponse(
            {
                "id": request_id_of(ctx.request),
                "status": "success",
                "message": "dry run passed",
                "data": (await command.dry_run()).model_dump(),
            }
        )
    return accepted_response(await enqueue(command, ctx.fingerprint(body)))


def _selector(text: str | None) -> Selector:
    try:
        return parse_selector(text or "")
    except SelectorError as err:
        raise ApiError(
            400,
            "INVALID_LABEL_SELECTOR",
            f"labelSelector: {err}",
            [{"field": "labelSelector", "message": str(err), "type": "invalid_label_selector"}],
        ) from err


NEXT_PAGE_HEADER = "X-Next-Page-Token"


@router.get(
    "",
    response_model=Envelope[list[ClusterView]],
    responses={
        200: {
            "description": "The clusters, newest first",
            "headers": {
                NEXT_PAGE_HEADER: {
                    "description": "With `limit`: the `pageToken` of the next page (absent on the last page)",
                    "schema": {"type": "string"},
                }
            },
        },
        **ERRORS,
    },
    summary="List clusters",
    description="The organization's clusters that are not deleted, newest first. `labelSelector` filters by "
    "labels in Kubernetes syntax: `env=prod`, `env==prod`, `env!=prod`, `team in (a,b)`, `team notin (a,b)`, "
    "`env` (has the key), `!env` (lacks it), comma-separated requirements must all hold; `!=` and `notin` also "
    "select clusters without the key. A selector that does not parse, or names an invalid key or value, is a 400 "
    "`INVALID_LABEL_SELECTOR` saying what is wrong. Without `limit` every match is answered; with it, a keyset "
    "page and `X-Next-Page-Token` for the next.",
)
async def list_clusters(
    request: Request,
    response: Response,
    principal: Viewer,
    pool: Pool,
    providerId: Annotated[str | None, Query(max_length=32, description="Only clusters of this provider")] = None,
    labelSelector: Annotated[
        str | None,
        Query(max_length=MAX_SELECTOR_LENGTH, description="Kubernetes label selector, e.g. `env=prod,team in (a,b)`"),
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=500, description="Page size (default: every cluster)")] = None,
    pageToken: Annotated[
        str | None, Query(max_length=200, description="`X-Next-Page-Token` of the previous page")
    ] = None,
) -> Envelope[list[ClusterView]]:
    selector = _selector(labelSelector)
    after_id = None
    if pageToken:
        try:
            after_id = clusters.decode_page_token(pageToken)
        except ValueError as err:
            raise ApiError(
                400, "INVALID_PAGE_TOKEN", "pageToken was not issued by this API", {"field": "pageToken"}
            ) from err
    page = await clusters.list_for_org(
        pool, principal.organization_id, providerId, selector=selector, limit=limit, after_id=after_id
    )
    if page.next_page_token is not None:
        response.headers[NEXT_PAGE_HEADER] = page.next_page_token
    rows = page.rows
    return Envelope(id=request_id_of(request), message=f"{len(rows)} clusters", data=[cluster_view(r) for r in rows])


async def _cluster_or_404(pool: Pool, organization_id: str, cluster_id: str) -> ClusterRow:
    row = await clusters.get(pool, organization_id, cluster_id)
    if row is None:
        raise not_found("cluster", cluster_id)
    return row


@router.get("/{clusterId}", response_model=Envelope[ClusterView], responses=ERRORS, summary="Get a cluster")
async def get_cluster(request: Request, clusterId: str, principal: Viewer, pool: Pool) -> Envelope[ClusterView]:
    row = await _cluster_or_404(pool, principal.organization_id, clusterId)
    return Envelope(id=request_id_of(request), message="cluster", data=cluster_view(row))


@router.get(
    "/{clusterId}/spec",
    response_model=Envelope[ClusterSpecDocument],
    responses=ERRORS,
    summary="The document the cluster was deployed from",
)
async def get_cluster_spec(request: Request, clusterId: str, principal: Viewer, pool: Pool) -> Response:
    row = await _cluster_or_404(pool, principal.organization_id, clusterId)
    document = json.dumps(cluster_spec_document(dict(row.spec)), separators=(",", ":")).encode()
    return Response(envelope_json(request_id_of(request), "cluster spec", document), media_type="application/json")


@router.get(
    "/{clusterId}/operations",
    response_model=Envelope[OperationPage],
    responses=ERRORS,
    summary="Operation history of a cluster, newest first",
)
async def cluster_operations(
    request: Request,
    clusterId: str,
    principal: Viewer,
    pool: Pool,
    settings: AppSettings,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    pageToken: Annotated[str | None, Query(max_length=200)] = None,
) -> Envelope[OperationPage]:
    await _cluster_or_404(pool, principal.organization_id, clusterId)
    page = await operation_page(
        pool,
        principal.organization_id,
        limit=limit,
        page_token=pageToken,
        cluster_id=clusterId,
        exact_total_limit=settings.exact_total_limit,
    )
    return Envelope(id=request_id_of(request), message=operations_message(page), data=page)


@router.get(
    "/{clusterId}/progress",
    response_model=Envelope[Operation],
    responses=ERRORS,
    summary="Progress of the cluster's latest (or a given) operation, with recent events",
)
async def cluster_progress(
    request: Request,
    clusterId: str,
    principal: Viewer,
    pool: Pool,
    operationId: Annotated[str | None, Query(max_length=64)] = None,
) -> Envelope[Operation]:
    await _cluster_or_404(pool, principal.organization_id, clusterId)
    if operationId:
        row = await operations.get(pool, principal.organization_id, operationId)
        if row is None or row.cluster_id != clusterId:
            raise not_found("operation", operationId)
    else:
        row = await operations.latest_for_cluster(pool, principal.organization_id, clusterId)
        if row is None:
            raise not_found("operation of cluster", clusterId)
    events = await operations.recent_events(pool, row.id)
    return Envelope(id=request_id_of(request), message="progress", data=operation_view(row, events))
