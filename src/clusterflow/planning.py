"""Update planning: from a cluster's recorded shape and an update request to a typed plan.

Pure functions, no I/O: the API uses them for dry runs and reports (`updateConfig.dryRun`,
`generateReport`) and to build the update workflow's input, so the plan a person reviews and
the plan that runs are the same object, identified by `planHash`. The plan's changes are the
contracts every provider reads (`clusterflow.contracts.changes`); nothing the request asks for
is dropped on the way: what no provider can do is refused here, by field.

Clouds cannot downgrade a control plane or a node group's Kubernetes version, so the inverse
(the rollback) restores node groups and tags and leaves versions where they got to; only the
local simulator, which has no such limit, may be asked for a downgrade (`allowDowngrade`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from clusterflow.contracts.changes import (
    ChangeKind,
    ClusterShape,
    NodeGroupChange,
    UpdateChange,
    UpdatePlan,
    UpdateRequest,
    VersionChange,
)
from clusterflow.contracts.cluster import NodeGroupSpec
from clusterflow.contracts.phases import Phase

# Seconds one rolling step of a node is expected to take, for estimates.
_SECONDS_PER_NODE = 90
_CONTROL_PLANE_SECONDS = 600
# Providers whose versions can move down (everyone else's cloud refuses).
_DOWNGRADABLE = frozenset({"local"})
# Node-group fields no cloud changes in place: a new group is the way.
_IMMUTABLE_GROUP_FIELDS = (
    ("machineTypes", "machine_types"),
    ("availabilityZones", "zones"),
    ("instanceType", "spot"),
    ("labels", "labels"),
    ("taints", "taints"),
)


def parse_version(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in version.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def minor_of(version: str) -> str:
    major, minor, _ = parse_version(version)
    return f"{major}.{minor}"


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    status: str  # PASS, WARN, FAIL
    remediation: str = ""
    category: str = "AUTOMATED"

    def view(self) -> dict[str, str]:
        return {
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "status": self.status,
            "remediation": self.remediation,
        }


@dataclass
class PlannedUpdate:
    """The plan that runs, with what a reviewer reads beside it: checks, warnings, estimate."""

    cluster_id: str
    plan: UpdatePlan
    upgrade_type: str  # NONE, PATCH, MINOR, MAJOR, DOWNGRADE
    skipped_versions: list[str]
    checks: list[Check]
    warnings: list[str]
    max_surge: str
    max_unavailable: str
    estimated_seconds: int
    plan_hash: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors and all(c.status != "FAIL" for c in self.checks)

    @property
    def is_minor_upgrade(self) -> bool:
        return self.upgrade_type in ("MINOR", "MAJOR")

    @property
    def current_version(self) -> str | None:
        return self.plan.before.kubernetes_version

    @property
    def target_version(self) -> str | None:
        return self.plan.change.target_version

    @property
    def node_pool_changes(self) -> tuple[NodeGroupChange, ...]:
        return self.plan.change.node_groups


def _group_errors(index: int, old: NodeGroupSpec, new: NodeGroupSpec) -> list[str]:
    errors = []
    for document_name, attribute in _IMMUTABLE_GROUP_FIELDS:
        if getattr(old, attribute) != getattr(new, attribute):
            errors.append(
                f"spec.nodeGroups[{index}].{document_name}: node group {new.name} cannot change its "
                f"{document_name} in place; add a group with the new {document_name} and remove this one"
            )
    return errors


def _node_group_changes(
    current: tuple[NodeGroupSpec, ...], desired: tuple[NodeGroupSpec, ...] | None, target_version: str | None
) -> tuple[list[NodeGroupChange], list[NodeGroupChange], list[str]]:
    """(forward changes, inverse changes in the order they run, errors) between the groups."""
    forward: list[NodeGroupChange] = []
    inverse: list[NodeGroupChange] = []
    errors: list[str] = []
    by_name = {g.name: g for g in current}
    wanted = desired if desired is not None else current
    for index, group in enumerate(wanted):
        old = by_name.get(group.name)
        if old is None:
            forward.append(NodeGroupChange.add(group))
            inverse.append(NodeGroupChange.remove(group))
            continue
        if desired is not None:
            errors += _group_errors(index, old, group)
        if old.size != group.size:
            forward.append(NodeGroupChange.resize(group.name, group.size))
            inverse.append(NodeGroupChange.resize(old.name, old.size))
        if target_version:
            forward.append(NodeGroupChange.upgrade(group.name, target_version))
    names = {g.name for g in wanted}
    for old in current:
        if old.name not in names:
            forward.append(NodeGroupChange.remove(old))
            inverse.append(NodeGroupChange.add(old))
    return forward, list(reversed(inverse)), errors


def _version_analysis(
    current: str | None, target: str | None, supported: list[str], allow_downgrade: bool, downgradable: bool
) -> tuple[str, list[str], list[Check]]:
    if not target or not current or target == current:
        return "NONE", [], []
    checks: list[Check] = []
    cur, tgt = parse_version(current), parse_version(target)
    supported_ok = minor_of(target) in {minor_of(v) for v in supported}
    checks.append(
        Check(
            "version-supported",
            f"Kubernetes {target} is offered by the provider",
            "PASS" if supported_ok else "FAIL",
            "" if supported_ok else f"choose one of: {', '.join(supported)}",
        )
    )
    skipped: list[str] = []
    if tgt < cur:
        kind = "DOWNGRADE"
        if not downgradable:
            remedy = "the cloud cannot downgrade a control plane: deploy a new cluster at the older version"
        else:
            remedy = "" if allow_downgrade else "set updateConfig.allowDowngrade to roll back on purpose"
        checks.append(
            Check(
                "no-downgrade",
                f"downgrade from {current} to {target}",
                "WARN" if allow_downgrade and downgradable else "FAIL",
                remedy,
            )
        )
    else:
        kind = "MAJOR" if tgt[0] > cur[0] else "MINOR" if tgt[1] > cur[1] else "PATCH"
        skipped = [f"{cur[0]}.{m}" for m in range(cur[1] + 1, tgt[1])] if tgt[0] == cur[0] else []
        checks.append(
            Check(
                "version-skew",
                "the upgrade moves at most one minor version",
                "FAIL" if skipped else "PASS",
                f"upgrade one minor version at a time: {' -> '.join([minor_of(current), *skipped, minor_of(target)])}"
                if skipped
                else "",
            )
        )
    return kind, skipped, checks


def _provider_block_errors(provider: str, request: UpdateRequest) -> list[str]:
    errors = [f"{path}: not supported yet; nothing was changed" for path in request.unsupported]
    for block, owner in (("gke", "gcp"), ("aks", "azure"), ("simulation", "local")):
        if getattr(request, block) is not None and provider != owner:
            name = "local" if block == "simulation" else block
            errors.append(f"spec.{name}: applies to {owner} clusters; this cluster runs on {provider}")
    return errors


def plan_update(
    *,
    cluster_id: str,
    provider: str,
    before: ClusterShape,
    request: UpdateRequest,
    supported_versions: list[str],
    group_problems: tuple[str, ...] = (),
    upgrade_warnings: dict[str, tuple[str, ...]] | None = None,
) -> PlannedUpdate:
    """Plan an update; the supported versions and per-minor upgrade warnings come from the
    provider's catalog, and `group_problems` are the requested node groups' refusals by the
    deploy checks (machine types, zones), so a group is judged the same way in both."""
    current_version = before.kubernetes_version
    target = request.kubernetes_version if request.kubernetes_version != current_version else None
    upgrade_type, skipped, checks = _version_analysis(
        current_version, target, supported_versions, request.allow_downgrade, provider in _DOWNGRADABLE
    )
    forward, inverse, errors = _node_group_changes(before.node_groups, request.node_groups, target)
    errors += _provider_block_errors(provider, request)
    warnings: list[str] = []

    if request.node_groups is not None and not request.node_groups:
        errors.append("spec.nodeGroups: a cluster needs at least one node group")
    if request.node_groups is not None:
        checks.append(
            Check(
                "node-groups-offered",
                "the node groups use machine types and zones the provider offers in the cluster's region",
                "FAIL" if group_problems else "PASS",
                "; ".join(group_problems),
            )
        )
    removed = [c.name for c in forward if c.kind == ChangeKind.REMOVE]
    if removed:
        warnings.append(f"node groups {', '.join(removed)} will be drained and removed; their pods are rescheduled")
        checks.append(
            Check(
                "workload-eviction",
                f"removing {', '.join(removed)} evicts its pods",
                "WARN",
                "make sure the remaining groups have room for the evicted pods",
                "MANUAL",
            )
        )
    tags_change = request.tags is not None and dict(request.tags) != dict(before.tags)
    if upgrade_type in ("MINOR", "MAJOR") and target:
        warnings.append(f"minor upgrade {current_version} -> {target}: review deprecated APIs before proceeding")
        warnings += list((upgrade_warnings or {}).get(minor_of(target), ()))
    if target:
        warnings.append(
            f"if the update fails or is cancelled after the control plane reached {target}, it stays there: "
            "the cloud cannot downgrade it; node groups and tags are restored"
        )
    for check in checks:
        if check.status == "FAIL":
            errors.append(f"{check.name}: {check.description} — {check.remediation}".rstrip(" —"))

    settings_change = request.gke is not None or request.aks is not None
    phases: list[Phase] = [Phase.VALIDATE]
    if target or tags_change or settings_change:
        phases.append(Phase.CONTROL_PLANE)
    if forward:
        phases.append(Phase.NODE_GROUPS)
    if target:
        phases.append(Phase.ADDONS)
    phases.append(Phase.VERIFY)
    if not target and not forward and not tags_change and not settings_change and not errors:
        errors.append("nothing to change: the update asks for the cluster's current state")

    version = VersionChange(current_version, target) if target and current_version else None
    new_tags = dict(request.tags) if tags_change and request.tags is not None else None
    change = UpdateChange(
        version=version,
        node_groups=tuple(forward),
        tags=new_tags,
        gke=request.gke,
        aks=request.aks,
        simulation=request.simulation,
    )
    # The inverse moves no version (see the module docstring; the local simulator behaves like
    # a cloud here, so what it shows is what a cloud would do) and keeps the simulation's pacing.
    undo = UpdateChange(
        node_groups=tuple(inverse),
        tags=dict(before.tags) if tags_change else None,
        simulation=request.simulation,
    )
    after = ClusterShape(
        kubernetes_version=target or current_version,
        node_groups=request.node_groups if request.node_groups is not None else before.node_groups,
        tags=new_tags if new_tags is not None else before.tags,
    )
    plan = UpdatePlan(phases=tuple(phases), change=change, inverse=undo, before=before, after=after)

    rolled_nodes = sum(g.max_nodes for g in after.node_groups) if target else 0
    estimated = (_CONTROL_PLANE_SECONDS if target else 0) + rolled_nodes * _SECONDS_PER_NODE + 30 * len(forward)
    planned = PlannedUpdate(
        cluster_id=cluster_id,
        plan=plan,
        upgrade_type=upgrade_type,
        skipped_versions=skipped,
        checks=checks,
        warnings=warnings,
        max_surge=request.max_surge,
        max_unavailable=request.max_unavailable,
        estimated_seconds=estimated,
        errors=errors,
    )
    planned.plan_hash = plan_hash(cluster_id, plan)
    return planned


def plan_hash(cluster_id: str, plan: UpdatePlan) -> str:
    """Identifies a plan: the same cluster state and the same change give the same hash."""
    canonical = json.dumps(
        [cluster_id, asdict(plan.before), asdict(plan.change)], sort_keys=True, separators=(",", ":"), default=str
    )
    return "plan_" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _duration(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


_STRATEGY = {
    ChangeKind.UPGRADE: "ROLLING",
    ChangeKind.RESIZE: "IN_PLACE",
    ChangeKind.ADD: "CREATE",
    ChangeKind.REMOVE: "DRAIN_AND_DELETE",
}


def _pool_view(change: NodeGroupChange) -> dict[str, Any]:
    group = change.group
    size = change.size or (group.size if group else None)
    return {
        "name": change.name,
        "changeType": change.kind.value,
        "strategy": _STRATEGY[change.kind],
        "minNodes": size.min_nodes if size else None,
        "maxNodes": size.max_nodes if size else None,
        "machineTypes": list(group.machine_types) if group else [],
        "instanceType": ("spot" if group.spot else "ondemand") if group else None,
        "kubernetesVersion": change.version,
    }


def plan_view(
    planned: PlannedUpdate, cluster_name: str, provider: str, provisioner_type: str, region: str
) -> dict[str, Any]:
    """The reference's `upgradePlan` document."""
    plan = planned.plan
    phase_descriptions = {
        Phase.VALIDATE: "preflight checks",
        Phase.CONTROL_PLANE: f"upgrade the control plane to {planned.target_version}"
        if planned.target_version
        else "apply control-plane settings and tags",
        Phase.NODE_GROUPS: "apply node pool changes",
        Phase.ADDONS: "bring add-ons to versions matching the control plane",
        Phase.VERIFY: "verify cluster health",
    }
    pools = [_pool_view(c) for c in plan.change.node_groups]
    return {
        "clusterName": cluster_name,
        "provider": provider,
        "provisionerType": provisioner_type,
        "region": region,
        "currentVersion": planned.current_version,
        "targetVersion": planned.target_version or planned.current_version,
        "phases": [
            {
                "name": phase.value,
                "description": phase_descriptions[phase],
                "strategy": "ROLLING" if phase == Phase.NODE_GROUPS else "SEQUENTIAL",
                "estimatedDuration": _duration(
                    _CONTROL_PLANE_SECONDS
                    if phase == Phase.CONTROL_PLANE
                    else planned.estimated_seconds // 2
                    if phase == Phase.NODE_GROUPS
                    else 60
                ),
                "details": [c.describe() for c in plan.change.node_groups] if phase == Phase.NODE_GROUPS else [],
                "nodePools": pools if phase == Phase.NODE_GROUPS else [],
            }
            for phase in plan.phases
        ],
        "rollback": {
            "details": [c.describe() for c in plan.inverse.node_groups],
            "restoresTags": plan.inverse.tags is not None,
            "controlPlane": "stays on the version it reached (clouds cannot downgrade)",
        },
        "preflightChecks": [c.view() for c in planned.checks],
        "rollingStrategy": {
            "maxSurge": planned.max_surge,
            "maxUnavailable": planned.max_unavailable,
            "description": (
                f"replace nodes {planned.max_surge} at a time, at most {planned.max_unavailable} unavailable"
            ),
        },
        "planHash": planned.plan_hash,
    }


def report_view(planned: PlannedUpdate, current_nodes: int) -> dict[str, Any]:
    """The reference's `upgradeReport` document."""
    fails = sum(c.status == "FAIL" for c in planned.checks)
    warns = sum(c.status == "WARN" for c in planned.checks) + len(planned.warnings)
    score = max(0, 100 - 40 * fails - 10 * warns)
    risk = (
        "HIGH" if fails or planned.upgrade_type == "MAJOR" else "MEDIUM" if warns or planned.is_minor_upgrade else "LOW"
    )
    return {
        "canProceed": planned.passed,
        "readinessScore": score,
        "riskLevel": risk,
        "estimatedTime": _duration(planned.estimated_seconds),
        "reportSummary": (
            f"{planned.upgrade_type.lower()} update with {len(planned.node_pool_changes)} node pool changes; "
            + ("ready to proceed" if planned.passed else f"blocked by {len(planned.errors)} problems")
        ),
        "versionAnalysis": {
            "currentVersion": planned.current_version,
            "targetVersion": planned.target_version or planned.current_version,
            "upgradeType": planned.upgrade_type,
            "skippedVersions": planned.skipped_versions,
            "breakingChanges": [],
            "deprecatedAPIs": [],
        },
        "warnings": [
            {"type": "UPGRADE", "severity": "MEDIUM", "description": w, "affected": [], "resolution": ""}
            for w in planned.warnings
        ],
        "criticalIssues": [
            {"type": "PREFLIGHT", "severity": "HIGH", "description": e, "affected": [], "resolution": ""}
            for e in planned.errors
        ],
        "recommendations": [c.remediation for c in planned.checks if c.remediation],
        "resourceAnalysis": {
            "currentNodes": current_nodes,
            "requiredForSurge": int(planned.max_surge) if planned.max_surge.isdigit() else 1,
            "hasCapacity": True,
        },
    }
