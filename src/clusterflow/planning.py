"""Update planning: from a cluster's current state and a K8sClusterUpdate to a plan.

Pure functions, no I/O: the API uses them for dry runs and reports (`updateConfig.dryRun`,
`generateReport`) and to build the update workflow's input, so the plan a person reviews and
the plan that runs are the same object, identified by `planHash`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from clusterflow.workflows.contracts import Phase

# Seconds one rolling step of a node is expected to take, for estimates.
_SECONDS_PER_NODE = 90
_CONTROL_PLANE_SECONDS = 600


def parse_version(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in version.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def minor_of(version: str) -> str:
    major, minor, _ = parse_version(version)
    return f"{major}.{minor}"


@dataclass
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
class UpdatePlan:
    cluster_id: str
    current_version: str | None
    target_version: str | None
    upgrade_type: str  # NONE, PATCH, MINOR, MAJOR, DOWNGRADE
    skipped_versions: list[str]
    node_pool_changes: list[dict[str, Any]]
    checks: list[Check]
    warnings: list[str]
    phases: list[str]
    change: dict[str, Any]
    rollback: dict[str, Any]
    result_fields: dict[str, Any]
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


def _node_group_changes(
    current: list[dict[str, Any]], desired: list[dict[str, Any]] | None, target_version: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(forward changes, inverse changes) between the current and desired data-plane groups."""
    forward: list[dict[str, Any]] = []
    inverse: list[dict[str, Any]] = []
    by_name = {g["name"]: g for g in current}
    wanted = {g["name"]: g for g in desired} if desired is not None else dict(by_name)
    for name, group in wanted.items():
        old = by_name.get(name)
        if old is None:
            forward.append({"name": name, "changeType": "ADD", "spec": group})
            inverse.append({"name": name, "changeType": "REMOVE", "spec": group})
            continue
        size_changed = (old.get("minNode"), old.get("maxNode")) != (group.get("minNode"), group.get("maxNode"))
        if size_changed:
            forward.append(
                {
                    "name": name,
                    "changeType": "RESIZE",
                    "spec": {"minNode": group["minNode"], "maxNode": group["maxNode"]},
                }
            )
            inverse.append(
                {"name": name, "changeType": "RESIZE", "spec": {"minNode": old["minNode"], "maxNode": old["maxNode"]}}
            )
        if target_version:
            forward.append({"name": name, "changeType": "UPGRADE", "spec": {"kubernetesVersion": target_version}})
    for name, old in by_name.items():
        if name not in wanted:
            forward.append({"name": name, "changeType": "REMOVE", "spec": old})
            inverse.append({"name": name, "changeType": "ADD", "spec": old})
    return forward, inverse


def _version_analysis(
    current: str | None, target: str | None, supported: list[str], allow_downgrade: bool
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
        checks.append(
            Check(
                "no-downgrade",
                f"downgrade from {current} to {target}",
                "WARN" if allow_downgrade else "FAIL",
                "" if allow_downgrade else "set updateConfig.allowDowngrade to roll back on purpose",
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


def plan_update(
    *,
    cluster_id: str,
    current_version: str | None,
    worker_nodes: list[dict[str, Any]],
    tags: dict[str, str],
    spec: dict[str, Any],
    supported_versions: list[str],
    known_machine_types: set[str] | None = None,
    upgrade_warnings: dict[str, tuple[str, ...]] | None = None,
) -> UpdatePlan:
    """Plan an update. `spec` is the K8sClusterUpdate spec as JSON (camelCase); the supported
    versions, machine types and per-minor upgrade warnings come from the provider's catalog."""
    config = spec.get("updateConfig") or {}
    target = spec.get("kubernetesVersion")
    if target == current_version:
        target = None
    upgrade_type, skipped, checks = _version_analysis(
        current_version, target, supported_versions, bool(config.get("allowDowngrade"))
    )
    desired_groups = spec.get("nodeGroups")
    forward, inverse = _node_group_changes(worker_nodes, desired_groups, target)
    warnings: list[str] = []
    errors: list[str] = []

    if desired_groups is not None and not desired_groups:
        errors.append("nodeGroups: a cluster needs at least one node group")
    if known_machine_types is not None:
        unknown = sorted(
            {m for c in forward if c["changeType"] == "ADD" for m in c["spec"].get("machineTypes", [])}
            - known_machine_types
        )
        checks.append(
            Check(
                "machine-types",
                "new node groups use machine types the provider offers",
                "FAIL" if unknown else "PASS",
                f"unknown machine types: {', '.join(unknown)}" if unknown else "",
            )
        )
    removed = [c["name"] for c in forward if c["changeType"] == "REMOVE"]
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
    new_tags = spec.get("tags")
    tag_change = new_tags is not None and new_tags != tags
    if upgrade_type in ("MINOR", "MAJOR") and target:
        warnings.append(f"minor upgrade {current_version} -> {target}: review deprecated APIs before proceeding")
        warnings += list((upgrade_warnings or {}).get(minor_of(target), ()))
    for check in checks:
        if check.status == "FAIL":
            errors.append(f"{check.name}: {check.description} — {check.remediation}".rstrip(" —"))

    phases: list[str] = [Phase.VALIDATE]
    if target:
        phases.append(Phase.CONTROL_PLANE)
    if forward:
        phases.append(Phase.NODE_GROUPS)
    if target:
        phases.append(Phase.ADDONS)
    phases.append(Phase.VERIFY)
    if not target and not forward and not tag_change and not errors:
        errors.append("nothing to change: the update asks for the cluster's current state")

    desired_nodes = desired_groups if desired_groups is not None else worker_nodes
    change: dict[str, Any] = {"nodeGroups": forward}
    rollback: dict[str, Any] = {"nodeGroups": list(reversed(inverse))}
    if target:
        change["kubernetesVersion"] = target
        rollback["kubernetesVersion"] = current_version
        rollback["nodeGroups"] = [
            {"name": g["name"], "changeType": "UPGRADE", "spec": {"kubernetesVersion": current_version}}
            for g in worker_nodes
        ] + rollback["nodeGroups"]
    if tag_change:
        change["tags"], rollback["tags"] = new_tags, tags
    if spec.get("local"):
        change["local"] = spec["local"]
    for provider_block in ("eks", "gke", "aks", "selfHosted"):
        if spec.get(provider_block):
            change[provider_block] = spec[provider_block]
    result_fields: dict[str, Any] = {"workerNodes": desired_nodes}
    if target:
        result_fields["kubernetesVersion"] = target
    if tag_change:
        result_fields["tags"] = new_tags

    rolled_nodes = sum(int(g.get("maxNode", 1)) for g in desired_nodes) if target else 0
    estimated = (_CONTROL_PLANE_SECONDS if target else 0) + rolled_nodes * _SECONDS_PER_NODE + 30 * len(forward)
    plan = UpdatePlan(
        cluster_id=cluster_id,
        current_version=current_version,
        target_version=target,
        upgrade_type=upgrade_type,
        skipped_versions=skipped,
        node_pool_changes=forward,
        checks=checks,
        warnings=warnings,
        phases=phases,
        change=change,
        rollback=rollback,
        result_fields=result_fields,
        max_surge=str(config.get("maxSurge") or "1"),
        max_unavailable=str(config.get("maxUnavailable") or "0"),
        estimated_seconds=estimated,
        errors=errors,
    )
    plan.plan_hash = plan_hash(cluster_id, current_version, worker_nodes, tags, change)
    return plan


def plan_hash(
    cluster_id: str,
    version: str | None,
    worker_nodes: list[dict[str, Any]],
    tags: dict[str, str],
    change: dict[str, Any],
) -> str:
    """Identifies a plan: the same cluster state and the same change give the same hash."""
    canonical = json.dumps([cluster_id, version, worker_nodes, tags, change], sort_keys=True, separators=(",", ":"))
    return "plan_" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _duration(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def plan_view(plan: UpdatePlan, cluster_name: str, provider: str, provisioner_type: str, region: str) -> dict[str, Any]:
    """The reference's `upgradePlan` document."""
    phase_descriptions = {
        Phase.VALIDATE: "preflight checks",
        Phase.CONTROL_PLANE: f"upgrade the control plane to {plan.target_version}",
        Phase.NODE_GROUPS: "apply node pool changes",
        Phase.ADDONS: "bring add-ons to versions matching the control plane",
        Phase.VERIFY: "verify cluster health",
    }
    pools = [
        {
            "name": c["name"],
            "changeType": c["changeType"],
            "strategy": "ROLLING"
            if c["changeType"] == "UPGRADE"
            else "IN_PLACE"
            if c["changeType"] == "RESIZE"
            else "CREATE"
            if c["changeType"] == "ADD"
            else "DRAIN_AND_DELETE",
            "minNodes": c["spec"].get("minNode"),
            "maxNodes": c["spec"].get("maxNode"),
            "machineTypes": c["spec"].get("machineTypes", []),
            "instanceType": c["spec"].get("instanceType"),
        }
        for c in plan.node_pool_changes
    ]
    return {
        "clusterName": cluster_name,
        "provider": provider,
        "provisionerType": provisioner_type,
        "region": region,
        "currentVersion": plan.current_version,
        "targetVersion": plan.target_version or plan.current_version,
        "phases": [
            {
                "name": phase,
                "description": phase_descriptions[Phase(phase)],
                "strategy": "ROLLING" if phase == Phase.NODE_GROUPS else "SEQUENTIAL",
                "estimatedDuration": _duration(
                    _CONTROL_PLANE_SECONDS
                    if phase == Phase.CONTROL_PLANE
                    else plan.estimated_seconds // 2
                    if phase == Phase.NODE_GROUPS
                    else 60
                ),
                "details": [f"{p['changeType']} {p['name']}" for p in pools] if phase == Phase.NODE_GROUPS else [],
                "nodePools": pools if phase == Phase.NODE_GROUPS else [],
            }
            for phase in plan.phases
        ],
        "preflightChecks": [c.view() for c in plan.checks],
        "rollingStrategy": {
            "maxSurge": plan.max_surge,
            "maxUnavailable": plan.max_unavailable,
            "description": f"replace nodes {plan.max_surge} at a time, at most {plan.max_unavailable} unavailable",
        },
        "planHash": plan.plan_hash,
    }


def report_view(plan: UpdatePlan, current_nodes: int) -> dict[str, Any]:
    """The reference's `upgradeReport` document."""
    fails = sum(c.status == "FAIL" for c in plan.checks)
    warns = sum(c.status == "WARN" for c in plan.checks) + len(plan.warnings)
    score = max(0, 100 - 40 * fails - 10 * warns)
    risk = "HIGH" if fails or plan.upgrade_type == "MAJOR" else "MEDIUM" if warns or plan.is_minor_upgrade else "LOW"
    return {
        "canProceed": plan.passed,
        "readinessScore": score,
        "riskLevel": risk,
        "estimatedTime": _duration(plan.estimated_seconds),
        "reportSummary": (
            f"{plan.upgrade_type.lower()} update with {len(plan.node_pool_changes)} node pool changes; "
            + ("ready to proceed" if plan.passed else f"blocked by {len(plan.errors)} problems")
        ),
        "versionAnalysis": {
            "currentVersion": plan.current_version,
            "targetVersion": plan.target_version or plan.current_version,
            "upgradeType": plan.upgrade_type,
            "skippedVersions": plan.skipped_versions,
            "breakingChanges": [],
            "deprecatedAPIs": [],
        },
        "warnings": [
            {"type": "UPGRADE", "severity": "MEDIUM", "description": w, "affected": [], "resolution": ""}
            for w in plan.warnings
        ],
        "criticalIssues": [
            {"type": "PREFLIGHT", "severity": "HIGH", "description": e, "affected": [], "resolution": ""}
            for e in plan.errors
        ],
        "recommendations": [c.remediation for c in plan.checks if c.remediation],
        "resourceAnalysis": {
            "currentNodes": current_nodes,
            "requiredForSurge": int(plan.max_surge) if plan.max_surge.isdigit() else 1,
            "hasCapacity": True,
        },
    }
