"""UPDATE_RUN: resolve a fleet update run against the organization's clusters, then enqueue it.

Resolution is shared by the dry run and the real request, so the plan a person reviews is the
plan that runs: each group's clusters (by ID in the order given, or by label selector in name
order), each cluster's own update plan and preflight checks from the same planner a single
update uses (`commands/update.planned_update`), and the clusters that will not be updated with
the reason (registered through an agent, already on the target, refused by the planner,
selected by an earlier group). A selection that names an unknown cluster, names one cluster
twice, or leaves nothing to update is a 422 naming the field.

Each planned cluster gets its CLUSTER_UPDATE operation ID and its workflow input here, stored
beside the run (`records/update_runs.py`); the parent workflow's input holds only IDs.
The run as a whole goes through the organization's approval policy as an update would (a minor
upgrade waits for an owner by default): one decision for the run instead of one per cluster.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from clusterflow.api.commands.common import execution_policy, issue_approval, normalized_spec
from clusterflow.api.commands.update import planned_update
from clusterflow.api.enqueue import OperationCommand, OperationPlan
from clusterflow.api.errors import ApiError
from clusterflow.api.schemas.clusters import API_VERSION, K8sClusterUpdate
from clusterflow.api.schemas.update_runs import (
    GateDoc,
    GateView,
    MaintenanceWindowDoc,
    PlannedClusterView,
    PlannedGroupView,
    PlannedStageView,
    PreflightCheckView,
    RunPlanView,
    SkippedClusterView,
    StrategyDoc,
    UpdateRunRequest,
)
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.contracts.labels import SelectorError, parse_selector
from clusterflow.contracts.operations import ClusterState, OperationType, UpdateInput
from clusterflow.contracts.update_runs import (
    BusyBehaviour,
    Concurrency,
    FailurePolicy,
    Gate,
    GateKind,
    GateTiming,
    MaintenanceWindow,
    PlannedGroup,
    PlannedStage,
    RunPlan,
    SkippedCluster,
    UpdateRunInput,
)
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.planning import PlannedUpdate
from clusterflow.records import clusters, update_runs
from clusterflow.records.catalog import current_catalog
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.db import Conn
from clusterflow.records.registrations import is_registered
from clusterflow.records.update_runs import PlannedChild
from clusterflow.workflows.registry import WORKFLOW_TYPES


def _field_error(field_path: str, message: str) -> ApiError:
    return ApiError(
        422,
        "VALIDATION_FAILED",
        f"invalid request: {field_path}: {message}",
        [{"field": field_path, "message": message, "type": "value_error"}],
    )


def _gate(doc: GateDoc, timing: GateTiming, number: int) -> Gate:
    window = None
    if doc.window is not None:
        w = doc.window
        window = MaintenanceWindow(tuple(w.weekdays), w.start, w.end, w.timeZone)
    kind = GateKind.APPROVAL if doc.type == "approval" else GateKind.NOT_BEFORE
    return Gate(f"g{number}", kind, timing, doc.name or "", doc.at, window)


def gate_view(gate: Gate) -> GateView:
    window = None
    if gate.window is not None:
        w = gate.window
        window = MaintenanceWindowDoc(weekdays=list(w.weekdays), start=w.start, end=w.end, timeZone=w.time_zone)  # type: ignore[arg-type]
    return GateView(
        id=gate.id,
        type="approval" if gate.kind == GateKind.APPROVAL else "notBefore",
        timing="before" if gate.timing == GateTiming.BEFORE else "after",
        name=gate.name or None,
        at=gate.not_before,
        window=window,
    )


@dataclass
class ResolvedRun:
    """A run request resolved against the fleet: the plan, each cluster's update, the views."""

    plan: RunPlan
    children: list[PlannedChild] = field(default_factory=list)
    updates: dict[str, PlannedUpdate] = field(default_factory=dict)
    rows: dict[str, ClusterRow] = field(default_factory=dict)

    @property
    def minor_upgrade(self) -> bool:
        return any(u.is_minor_upgrade for u in self.updates.values())

    def plan_hash(self) -> str:
        canonical = json.dumps(
            [asdict(self.plan), sorted(u.plan_hash for u in self.updates.values())], sort_keys=True, default=str
        )
        return "run_" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


class _Resolver:
    def __init__(self, conn: Conn, organization_id: str, document: UpdateRunRequest, policy_settings: Any) -> None:
        self.conn = conn
        self.org = organization_id
        self.document = document
        self.settings = policy_settings
        self.placed: dict[str, str] = {}  # cluster ID -> "stage/group"
        self.skipped: list[SkippedCluster] = []
        self.resolved = ResolvedRun(plan=RunPlan(stages=()))
        self.gate_number = 0

    def _gates(self, docs: list[GateDoc], timing: GateTiming) -> tuple[Gate, ...]:
        gates = []
        for doc in docs:
            self.gate_number += 1
            gates.append(_gate(doc, timing, self.gate_number))
        return tuple(gates)

    async def _select(self, stage_index: int, group_index: int) -> list[ClusterRow]:
        group = self.document.plan_strategy.stages[stage_index].groups[group_index]
        where = f"strategy.stages[{stage_index}].groups[{group_index}]"
        if group.clusterIds is not None:
            rows = []
            for index, cluster_id in enumerate(group.clusterIds):
                row = await clusters.get(self.conn, self.org, cluster_id)
                if row is None or row.state == ClusterState.DELETED:
                    raise _field_error(f"{where}.clusterIds[{index}]", f"no cluster {cluster_id} in this organization")
                if cluster_id in self.placed:
                    raise _field_error(
                        f"{where}.clusterIds[{index}]", f"cluster {cluster_id} is already in {self.placed[cluster_id]}"
                    )
                rows.append(row)
            return rows
        assert group.labelSelector is not None
        try:
            selector = parse_selector(group.labelSelector)
        except SelectorError as err:
            raise _field_error(f"{where}.labelSelector", str(err)) from err
        page = await clusters.list_for_org(self.conn, self.org, selector=selector)
        return sorted(page.rows, key=lambda r: r.name)

    def _document(self, row: ClusterRow) -> K8sClusterUpdate:
        change = self.document.change
        spec: dict[str, Any] = {"kubernetesVersion": change.kubernetesVersion}
        local = change.local
        if local is not None and row.provider == "local":
            block: dict[str, Any] = {}
            if local.phaseSeconds is not None:
                block["phaseSeconds"] = local.phaseSeconds
            if local.failAt is not None and (local.clusterIds is None or row.id in local.clusterIds):
                block["failAt"] = local.failAt
                if local.failTimes is not None:
                    block["failTimes"] = local.failTimes
            if block:
                spec["local"] = block
        return K8sClusterUpdate.model_validate({"apiVersion": API_VERSION, "kind": "K8sClusterUpdate", "spec": spec})

    def _skip(self, row: ClusterRow, stage: str, group: str, reason: str) -> None:
        self.skipped.append(SkippedCluster(row.id, row.name, stage, group, reason))

    async def resolve(self) -> ResolvedRun:
        catalog = await current_catalog(self.conn)
        stages = []
        position = 0
        for s_index, stage_doc in enumerate(self.document.plan_strategy.stages):
            stage_gates = self._gates(stage_doc.beforeGates, GateTiming.BEFORE)
            groups = []
            for g_index, group_doc in enumerate(stage_doc.groups):
                group_gates = self._gates(group_doc.beforeGates, GateTiming.BEFORE)
                chosen = []
                for row in await self._select(s_index, g_index):
                    here = f"{stage_doc.name}/{group_doc.name}"
                    if row.id in self.placed:
                        self._skip(row, stage_doc.name, group_doc.name, f"already selected by {self.placed[row.id]}")
                        continue
                    self.placed[row.id] = here
                    if is_registered(row):
                        self._skip(
                            row, stage_doc.name, group_doc.name, "registered through an agent: its owners upgrade it"
                        )
                        continue
                    if row.kubernetes_version == self.document.change.kubernetesVersion:
                        self._skip(row, stage_doc.name, group_doc.name, f"already on {row.kubernetes_version}")
                        continue
                    update = planned_update(row, self._document(row), catalog)
                    if not update.passed:
                        self._skip(row, stage_doc.name, group_doc.name, "; ".join(update.errors))
                        continue
                    position += 1
                    chosen.append(row.id)
                    self._child(row, update, stage_doc.name, group_doc.name, position)
                concurrency = group_doc.maxConcurrency
                parsed = (
                    Concurrency(int(concurrency[:-1]), percent=True)
                    if isinstance(concurrency, str)
                    else Concurrency(concurrency)
                )
                group_gates += self._gates(group_doc.afterGates, GateTiming.AFTER)
                groups.append(PlannedGroup(group_doc.name, tuple(chosen), parsed.resolve(len(chosen)), group_gates))
            stage_gates += self._gates(stage_doc.afterGates, GateTiming.AFTER)
            policy = stage_doc.failurePolicy
            failure = (
                FailurePolicy(policy.maxFailedPercent, percent=True)
                if policy.maxFailedPercent is not None
                else FailurePolicy(policy.maxFailed or 0)
            )
            size = sum(len(g.cluster_ids) for g in groups)
            stages.append(
                PlannedStage(
                    stage_doc.name,
                    tuple(groups),
                    stage_doc.afterStageWaitSeconds,
                    stage_gates,
                    failure.threshold(size),
                )
            )
        busy = self.document.plan_strategy.busyCluster
        self.resolved.plan = RunPlan(
            stages=tuple(stages),
            skipped=tuple(self.skipped),
            busy=BusyBehaviour.WAIT if busy.action == "wait" else BusyBehaviour.SKIP,
            busy_wait_seconds=busy.maxWaitSeconds if busy.action == "wait" else 0,
        )
        return self.resolved

    def _child(self, row: ClusterRow, update: PlannedUpdate, stage: str, group: str, position: int) -> None:
        child_id = new_operation_id()
        spec = normalized_spec(row)
        update_input = UpdateInput(
            operation_id=child_id,
            organization_id=self.org,
            cluster_id=row.id,
            cluster_name=row.name,
            provider=row.provider,
            region=row.region,
            spec=spec,
            plan=update.plan,
            policy=execution_policy(self.settings),
            approval=None,  # the run's own approval covers its clusters
            definition=ClusterDefinition.from_spec(spec),
        )
        self.resolved.children.append(
            PlannedChild(
                cluster_id=row.id,
                cluster_name=row.name,
                stage=stage,
                group=group,
                position=position,
                operation_id=child_id,
                planned_version=row.kubernetes_version,
                target_version=self.document.change.kubernetesVersion,
                update_input=asdict(update_input),
            )
        )
        self.resolved.updates[row.id] = update
        self.resolved.rows[row.id] = row


async def with_saved_strategy(conn: Conn, organization_id: str, document: UpdateRunRequest) -> UpdateRunRequest:
    """The request with its saved strategy copied in (a later change to the saved one never
    changes this run); a `strategyId` the organization does not have is a 422 naming it."""
    if document.strategyId is None:
        return document
    saved = await update_runs.get_strategy(conn, organization_id, document.strategyId)
    if saved is None:
        raise _field_error("strategyId", f"no saved strategy {document.strategyId} in this organization")
    return document.model_copy(update={"strategy": StrategyDoc.model_validate(saved.strategy)})


async def resolve_run(conn: Conn, organization_id: str, document: UpdateRunRequest, settings: Any) -> ResolvedRun:
    resolved = await _Resolver(conn, organization_id, document, settings).resolve()
    if not resolved.children:
        reasons = "; ".join(f"{s.cluster_name}: {s.reason}" for s in resolved.plan.skipped[:5])
        raise _field_error(
            "strategy.stages", "the run selects no cluster to update" + (f" ({reasons})" if reasons else "")
        )
    return resolved


def plan_view(resolved: ResolvedRun, document: UpdateRunRequest, approval_required: bool, now: datetime) -> RunPlanView:
    """The dry run's answer: the plan with each cluster's own plan, and the stages' earliest starts."""
    stages = []
    start = now
    order = 0
    for index, stage in enumerate(resolved.plan.stages):
        for gate in stage.gates:
            if gate.timing == GateTiming.BEFORE and gate.kind == GateKind.NOT_BEFORE:
                opens = (
                    datetime.fromisoformat(gate.not_before) if gate.not_before else gate.window.next_opening(start)  # type: ignore[union-attr]
                )
                start = max(start, opens)
        groups = []
        longest = 0
        for group in stage.groups:
            views = []
            for cluster_id in group.cluster_ids:
                order += 1
                update = resolved.updates[cluster_id]
                row = resolved.rows[cluster_id]
                views.append(
                    PlannedClusterView(
                        clusterId=cluster_id,
                        clusterName=row.name,
                        provider=row.provider,
                        order=order,
                        currentVersion=update.current_version,
                        targetVersion=document.change.kubernetesVersion,
                        phases=[p.value for p in update.plan.phases],
                        nodeGroupChanges=[c.describe() for c in update.node_pool_changes],
                        estimatedSeconds=update.estimated_seconds,
                        warnings=update.warnings,
                        preflightChecks=[PreflightCheckView(**c.view()) for c in update.checks],
                    )
                )
            waves = -(-len(group.cluster_ids) // group.max_concurrency) if group.cluster_ids else 0
            slowest = max((resolved.updates[c].estimated_seconds for c in group.cluster_ids), default=0)
            longest = max(longest, waves * slowest)
            groups.append(
                PlannedGroupView(
                    name=group.name,
                    maxConcurrency=group.max_concurrency,
                    beforeGates=[gate_view(g) for g in group.gates if g.timing == GateTiming.BEFORE],
                    afterGates=[gate_view(g) for g in group.gates if g.timing == GateTiming.AFTER],
                    clusters=views,
                )
            )
        stages.append(
            PlannedStageView(
                name=stage.name,
                order=index + 1,
                earliestStart=start.isoformat(),
                afterStageWaitSeconds=stage.after_stage_wait_seconds,
                failureThreshold=stage.failure_threshold,
                beforeGates=[gate_view(g) for g in stage.gates if g.timing == GateTiming.BEFORE],
                afterGates=[gate_view(g) for g in stage.gates if g.timing == GateTiming.AFTER],
                groups=groups,
            )
        )
        start = start + timedelta(seconds=longest + stage.after_stage_wait_seconds)
    total = len(resolved.children)
    return RunPlanView(
        valid=True,
        message=f"{total} clusters in {len(stages)} stages; {len(resolved.plan.skipped)} skipped",
        name=document.name,
        targetVersion=document.change.kubernetesVersion,
        totalClusters=total,
        approvalRequired=approval_required,
        stages=stages,
        skipped=[
            SkippedClusterView(
                clusterId=s.cluster_id, clusterName=s.cluster_name, stage=s.stage, group=s.group, reason=s.reason
            )
            for s in resolved.plan.skipped
        ],
    )


@dataclass(frozen=True, kw_only=True)
class StartUpdateRun(OperationCommand):
    operation_type = OperationType.UPDATE_RUN
    document: UpdateRunRequest

    async def prepare(self, conn: Conn) -> OperationPlan:
        ctx = self.ctx
        document = await with_saved_strategy(conn, ctx.organization_id, self.document)
        resolved = await resolve_run(conn, ctx.organization_id, document, ctx.settings)
        approval = await issue_approval(
            self,
            conn,
            OperationType.CLUSTER_UPDATE,
            minor_upgrade=resolved.minor_upgrade,
            plan_hash=resolved.plan_hash(),
        )
        workflow_input = UpdateRunInput(
            operation_id=self.operation_id,
            organization_id=ctx.organization_id,
            requested_by=ctx.principal.key_id,
            plan=resolved.plan,
            policy=execution_policy(ctx.settings),
            approval=approval.requirement if approval else None,
        )
        # The run's rows go in before its operation row (enqueue inserts that after `prepare`);
        # their foreign key to it is checked at commit (migration 0019).
        await update_runs.insert(
            conn,
            run_id=self.operation_id,
            organization_id=ctx.organization_id,
            name=self.document.name,
            request=document.model_dump(mode="json", exclude_none=True),
            plan=asdict(resolved.plan),
            children=resolved.children,
        )
        return OperationPlan(
            operation_type=self.operation_type,
            workflow_type=WORKFLOW_TYPES[self.operation_type],
            workflow_input=workflow_input,
            cluster_id=None,
            cluster_name=None,
            accepted_message=f"update run accepted: {len(resolved.children)} clusters",
            metadata={"updateRun": self.document.name, "targetVersion": self.document.change.kubernetesVersion},
            approval=approval,
            show_token=approval is not None and approval.shown_to(ctx.principal),
        )

    async def abandon(self, conn: Conn) -> None:
        await update_runs.forget(conn, self.operation_id)
