"""Clusters: deploy (and its dry run), list, get, spec, operation history, progress.

A deploy (real or dry run) is checked before anything is written or enqueued, in one place
(`deploy_checks`), so the dry run answers exactly what the real call would: the spec against the
provider's catalog (`catalog.spec_checks.check_deploy_spec`, the same function the providers'
VALIDATE phases use), then what the database knows about the account the deploy would act
through, read as the provider reads it. Every problem is a 422 `INVALID_SPEC` naming its field.
Only what needs the cloud itself (credentials answering, quotas) is left to VALIDATE.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from clusterflow.api import approvals
from clusterflow.api.body import read_json_object
from clusterflow.api.deps import AppSettings, Editor, Pool, Temporal, Viewer
from clusterflow.api.enqueue import OperationPlan, enqueue
from clusterflow.api.errors import ApiError, not_found, request_id_of, validation_error
from clusterflow.api.listing import operation_page
from clusterflow.api.schemas.clusters import (
    API_VERSION,
    ClusterSpec,
    ClusterSpecDocument,
    ClusterView,
    DeployDryRunResult,
    K8sCluster,
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
from clusterflow.catalog.spec_checks import SpecProblem, check_deploy_spec
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.contracts.operations import ClusterState, DeployInput, ExecutionPolicy, OperationType
from clusterflow.ids import cluster_id as new_cluster_id
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import cloud_accounts, clusters, federated_accounts, idempotency, operations
from clusterflow.records.db import Conn, Executor, Record
from clusterflow.settings import Settings
from clusterflow.workflows.registry import WORKFLOW_TYPES

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Replays the first response for a repeated request",
    ),
]


def execution_policy(settings: Settings) -> ExecutionPolicy:
    return ExecutionPolicy(
        retry_initial_seconds=settings.activity_retry_initial_seconds,
        max_attempts=settings.activity_max_attempts,
        heartbeat_timeout_seconds=settings.activity_heartbeat_timeout_seconds,
    )


def normalized_spec(row: Any) -> dict[str, Any]:
    """The cluster's spec with defaults filled in, as the deploy workflow received it."""
    return parse_cluster_document(dict(row["spec"])).spec.model_dump(mode="json", exclude_none=True)


def parse_cluster_document(body: dict[str, Any]) -> K8sCluster:
    """A K8sCluster document, or the reference's legacy flat body (the spec alone)."""
    legacy = "spec" not in body and "apiVersion" not in body and "kind" not in body
    try:
        if legacy:
            return K8sCluster(apiVersion=API_VERSION, kind="K8sCluster", spec=ClusterSpec.model_validate(body))
        return K8sCluster.model_validate(body)
    except ValidationError as err:
        raise validation_error(err.errors(), strip_prefix=()) from err


@dataclass(frozen=True)
class AccountProblem:
    """A deploy refused for the account it would act through (not the spec's shape)."""

    field: str
    message: str
    type: str


def _invalid_spec(problems: list[SpecProblem | AccountProblem]) -> ApiError:
    details = [
        {"field": p.field, "message": p.message, "type": p.type if isinstance(p, AccountProblem) else "invalid_spec"}
        for p in problems
    ]
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError(422, "INVALID_SPEC", f"invalid deploy spec: {first.field}: {first.message}{more}", details)


async def _account_problems(
    db: Executor, organization_id: str, spec: dict[str, Any], settings: Settings
) -> tuple[list[AccountProblem], str]:
    """The account, project or subscription the deploy would use, resolved as its provider's
    phases resolve it, from the database alone; and a sentence saying what was found."""
    provider = spec["provider"]
    provisioner = spec.get("provisioner") or {}
    if provider == "aws":
        wanted = (provisioner.get("eks") or {}).get("accountId")
        field = "spec.provisioner.eks.accountId" if wanted else "spec.provisioner"
        row = await cloud_accounts.find_usable(db, organization_id, "aws", wanted)
        if row is None:
            return [
                AccountProblem(
                    field,
                    f"no connected AWS account{' ' + wanted if wanted else ''} for this organization. Remedy: "
                    "connect it with POST /v1/cloud-accounts/aws, create the CloudFormation stack from the "
                    "returned template, and wait until the connection is CONNECTED.",
                    "cloud_account_not_connected",
                )
            ], ""
        if row["level"] != "manage":
            return [
                AccountProblem(
                    field,
                    f"AWS account {row['account_id']} is connected with level {row['level']!r}, which cannot "
                    "create clusters. Remedy: reconnect it with level 'manage' (POST /v1/cloud-accounts/aws, "
                    "forceUpdate=true).",
                    "cloud_access_level_too_low",
                )
            ], ""
        return [], f"AWS account {row['account_id']} is connected with level manage"
    if provider == "gcp":
        gke = provisioner.get("gke") or {}
        account = await federated_accounts.latest_connected(db, organization_id, "gcp", spec["clusterName"])
        account_project = dict(account["identity"] or {}).get("projectId") if account else None
        project = gke.get("projectId") or account_project or settings.gcp_default_project
        if not project:
            return [
                AccountProblem(
                    "spec.provisioner.gke.projectId",
                    "no GCP project: set provisioner.gke.projectId, connect a GCP project for this cluster name "
                    "(POST /v1/cloud-accounts/gcp), or configure CLUSTERFLOW_GCP_DEFAULT_PROJECT",
                    "no_project",
                )
            ], ""
        via = "the connected GCP account" if account else "the control plane's GCP credentials"
        return [], f"GKE project {project} (through {via})"
    if provider == "azure":
        aks = provisioner.get("aks") or {}
        account = await federated_accounts.latest_connected(db, organization_id, "azure", spec["clusterName"])
        params = dict(account["params"] or {}) if account else {}
        subscription = (
            aks.get("subscriptionId") or params.get("subscriptionId") or settings.azure_default_subscription_id
        )
        group = aks.get("resourceGroup") or params.get("resourceGroup") or settings.azure_default_resource_group
        problems = []
        for value, name in ((subscription, "subscriptionId"), (group, "resourceGroup")):
            if not value:
                problems.append(
                    AccountProblem(
                        f"spec.provisioner.aks.{name}",
                        f"no Azure {name}: set provisioner.aks.subscriptionId and resourceGroup, connect an Azure "
                        "subscription for this cluster name (POST /v1/cloud-accounts/azure), or configure "
                        "CLUSTERFLOW_AZURE_DEFAULT_SUBSCRIPTION_ID / _RESOURCE_GROUP",
                        "no_subscription",
                    )
                )
        via = "the connected Azure account" if account else "the control plane's Azure credentials"
        return problems, f"Azure subscription {subscription}, resource group {group} (through {via})"
    return [], ""


async def deploy_checks(db: Executor, organization_id: str, spec: dict[str, Any], settings: Settings) -> list[str]:
    """Refuse (422 INVALID_SPEC, every problem listed) a deploy its provider would refuse; else
    say what was checked."""
    problems: list[SpecProblem | AccountProblem] = list(check_deploy_spec(spec))
    found: list[AccountProblem] = []
    account = ""
    if not any(p.field == "spec.provisioner.type" for p in problems):
        found, account = await _account_problems(db, organization_id, spec, settings)
    problems += found
    if problems:
        raise _invalid_spec(problems)
    checks = [
        f"the spec against the {spec['provider']} catalog: region, Kubernetes version, machine types, zones "
        "and provisioner fields"
    ]
    if account:
        checks.append(account)
    return checks


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
    request: Request,
    principal: Editor,
    pool: Pool,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
    dryRun: Annotated[bool, Query(description="Validate without creating anything")] = False,
) -> JSONResponse:
    body = await read_json_object(request)
    document = parse_cluster_document(body)
    spec = document.spec
    if spec.provider not in settings.enabled_providers:
        raise ApiError(
            422,
            "PROVIDER_NOT_ENABLED",
            f"provider {spec.provider!r} is not enabled on this control plane "
            f"(enabled: {', '.join(settings.enabled_providers)})",
            [{"field": "spec.provider", "message": "provider not enabled", "type": "provider_not_enabled"}],
        )
    spec_json = spec.model_dump(mode="json", exclude_none=True)
    definition = ClusterDefinition.from_spec(spec_json)
    if dryRun:
        checks = await deploy_checks(pool, principal.organization_id, spec_json, settings)
        result = DeployDryRunResult(
            valid=True,
            message=f"cluster {spec.clusterName} would be deployed on {spec.provider}; checked " + "; ".join(checks),
            checks=checks,
        )
        return JSONResponse(
            {
                "id": request_id_of(request),
                "status": "success",
                "message": "dry run passed",
                "data": result.model_dump(),
            }
        )

    # /spec returns the document as the client sent it (a legacy flat body, wrapped); the
    # workflow gets the normalized spec with defaults filled in.
    original_spec = body.get("spec", body)
    document_json = {"apiVersion": document.apiVersion, "kind": document.kind, "spec": original_spec}
    operation_id, cluster_id = new_operation_id(), new_cluster_id()
    deploy_input = DeployInput(
        operation_id=operation_id,
        organization_id=principal.organization_id,
        cluster_id=cluster_id,
        cluster_name=spec.clusterName,
        provider=spec.provider,
        region=spec.region,
        spec=spec_json,
        policy=execution_policy(settings),
        definition=definition,
    )

    async def insert_cluster(conn: Conn) -> None:
        # After the idempotency lookup (a replay answers as the first call did), before any write.
        await deploy_checks(conn, principal.organization_id, spec_json, settings)
        plan.approval = await approvals.issue_if_required(
            conn,
            principal.organization_id,
            OperationType.CLUSTER_DEPLOY,
            settings.approval_window_seconds,
            caches=request.app.state.caches,
        )
        if plan.approval:
            deploy_input.approval = plan.approval.requirement
            plan.workflow_input = asdict(deploy_input)
        topology = spec_json["clusterSpec"]
        await clusters.insert(
            conn,
            cluster_id=cluster_id,
            organization_id=principal.organization_id,
            name=spec.clusterName,
            provider=spec.provider,
            provisioner_type=spec.provisioner.type,
            region=spec.region,
            kubernetes_version=spec.provisioner.kubernetes_version(),
            state=ClusterState.PROVISIONING,
            spec=document_json,
            control_plane=(topology.get("controlPlane") or {}).get("nodeGroup"),
            worker_nodes=topology["dataPlane"]["nodeGroups"],
            tags=dict(definition.tags),
        )

    async def release_cluster(conn: Conn) -> None:
        await clusters.set_state(conn, cluster_id, ClusterState.DELETED)

    plan = OperationPlan(
        operation_id=operation_id,
        operation_type=OperationType.CLUSTER_DEPLOY,
        workflow_type=WORKFLOW_TYPES[OperationType.CLUSTER_DEPLOY],
        workflow_input=asdict(deploy_input),
        cluster_id=cluster_id,
        cluster_name=spec.clusterName,
        accepted_message="deploy accepted",
        prepare=insert_cluster,
        abandon=release_cluster,
        show_token=principal.has_role("owner"),
    )
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, body)
    return await enqueue(request, pool, temporal, settings.task_queue, principal, plan, idempotency_key, fingerprint)


@router.get("", response_model=Envelope[list[ClusterView]], responses=ERRORS, summary="List clusters")
async def list_clusters(
    request: Request,
    principal: Viewer,
    pool: Pool,
    providerId: Annotated[str | None, Query(max_length=32, description="Only clusters of this provider")] = None,
) -> Envelope[list[ClusterView]]:
    rows = await clusters.list_for_org(pool, principal.organization_id, providerId)
    return Envelope(id=request_id_of(request), message=f"{len(rows)} clusters", data=[cluster_view(r) for r in rows])


async def _cluster_or_404(pool: Pool, organization_id: str, cluster_id: str) -> Record:
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
    document = json.dumps(cluster_spec_document(dict(row["spec"])), separators=(",", ":")).encode()
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
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    pageToken: Annotated[str | None, Query(max_length=200)] = None,
) -> Envelope[OperationPage]:
    await _cluster_or_404(pool, principal.organization_id, clusterId)
    page = await operation_page(
        pool, principal.organization_id, limit=limit, page_token=pageToken, cluster_id=clusterId
    )
    return Envelope(id=request_id_of(request), message=f"{page.totalCount} operations", data=page)


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
        if row is None or row["cluster_id"] != clusterId:
            raise not_found("operation", operationId)
    else:
        row = await operations.latest_for_cluster(pool, principal.organization_id, clusterId)
        if row is None:
            raise not_found("operation of cluster", clusterId)
    events = await operations.recent_events(pool, row["id"])
    return Envelope(id=request_id_of(request), message="progress", data=operation_view(row, events))
