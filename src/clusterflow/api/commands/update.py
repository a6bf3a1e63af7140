"""CLUSTER_UPDATE: plan the change against the record and the catalog, then enqueue it."""

from __future__ import annotations

from dataclasses import dataclass

from clusterflow.api.commands.common import ClusterCommand, issue_approval, normalized_spec
from clusterflow.api.enqueue import OperationPlan
from clusterflow.api.errors import ApiError
from clusterflow.api.schemas.clusters import K8sClusterUpdate, update_request
from clusterflow.catalog import Catalog
from clusterflow.catalog.spec_checks import check_deploy_spec
from clusterflow.contracts.changes import ClusterShape
from clusterflow.contracts.cluster import NodeGroupSpec
from clusterflow.contracts.operations import OperationType, UpdateInput
from clusterflow.planning import PlannedUpdate, plan_update
from clusterflow.records.catalog import current_catalog
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.db import Conn
from clusterflow.records.registrations import is_registered
from clusterflow.workflows.registry import WORKFLOW_TYPES


def planned_update(row: ClusterRow, document: K8sClusterUpdate, catalog: Catalog) -> PlannedUpdate:
    """The update plan, checked against the provider's catalog (versions, machine types, zones):
    the stored catalog (`records.catalog.current_catalog`) the deploy checks and VALIDATE read."""
    versions = catalog.versions(row.provider, row.provisioner_type, row.region)
    request = update_request(document.spec)
    return plan_update(
        cluster_id=row.id,
        provider=row.provider,
        before=recorded_shape(row),
        request=request,
        supported_versions=list(versions.supported_versions) if versions else [],
        group_problems=_group_problems(row, request.node_groups, catalog),
        upgrade_warnings=dict(versions.upgrade_warnings) if versions else {},
    )


_DEPLOYED_GROUPS = "spec.clusterSpec.dataPlane.nodeGroups"


def _group_problems(row: ClusterRow, groups: tuple[NodeGroupSpec, ...] | None, catalog: Catalog) -> tuple[str, ...]:
    """The requested node groups through the deploy checks, as if the cluster were deployed with
    them: a group an update adds is judged exactly as one a deploy creates."""
    if not groups:
        return ()
    spec = normalized_spec(row)
    spec["clusterSpec"]["dataPlane"]["nodeGroups"] = [g.to_document() for g in groups]
    return tuple(
        f"spec.nodeGroups{p.field.removeprefix(_DEPLOYED_GROUPS)}: {p.message}"
        for p in check_deploy_spec(spec, catalog)
        if p.field.startswith(_DEPLOYED_GROUPS)
    )


def recorded_shape(row: ClusterRow) -> ClusterShape:
    """The cluster as its record states it: what an update plans from."""
    return ClusterShape(
        kubernetes_version=row.kubernetes_version,
        node_groups=tuple(NodeGroupSpec.from_document(g) for g in row.worker_nodes or ()),
        tags={str(k): str(v) for k, v in (row.tags or {}).items()},
    )


@dataclass(frozen=True, kw_only=True)
class UpdateCluster(ClusterCommand):
    operation_type = OperationType.CLUSTER_UPDATE
    document: K8sClusterUpdate

    async def prepare(self, conn: Conn) -> OperationPlan:
        row = (await self.lock(conn)).row
        if is_registered(row):
            raise ApiError(
                409,
                "CLUSTER_IS_REGISTERED",
                f"cluster {row.name} is registered through an agent: its owners change it, not clusterflow",
                {"clusterId": row.id},
            )
        update = planned_update(row, self.document, await current_catalog(conn))
        if not update.passed:
            raise ApiError(
                422,
                "UPDATE_REFUSED",
                "the update is refused: " + "; ".join(update.errors),
                {"errors": update.errors, "preflightChecks": [c.view() for c in update.checks]},
            )
        approval = await issue_approval(
            self,
            conn,
            self.operation_type,
            minor_upgrade=update.is_minor_upgrade,
            plan_hash=update.plan_hash,
            labels=row.labels,
        )
        return OperationPlan(
            operation_type=self.operation_type,
            workflow_type=WORKFLOW_TYPES[self.operation_type],
            workflow_input=UpdateInput(plan=update.plan, **self.input_fields(row, approval)),
            cluster_id=self.cluster_id,
            cluster_name=row.name,
            accepted_message="update accepted",
            metadata={"planHash": update.plan_hash, "targetVersion": update.target_version or ""},
            approval=approval,
            show_token=approval is not None and approval.shown_to(self.ctx.principal),
        )
