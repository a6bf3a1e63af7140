"""Approval policy, evaluated once per operation at enqueue, and the approval tokens and links.

Which operations wait, and for how many owners, is organization policy, stored in
`organizations.approval_policy` and changed through `/v1/organizations/{orgId}/approval-policy`:

- the organization's own flags: `clusterDelete` (default on), `minorVersionUpgrade` (default
  on), `clusterUpdate` (any update) and `clusterDeploy` (default off);
- `approvalsRequired` (distinct owners, default 1) and `requireDifferentApprover` (four eyes:
  the requester cannot decide their own operation, whatever their role);
- `rules`, scoped by cluster labels (`labelSelector`, Kubernetes syntax; `environment: prod` is
  short for `env=prod`): the first rule whose selector matches the cluster decides which kinds
  of operation on it wait and may override the two settings above. No match: the flags decide.

The policy is evaluated here, once, when the operation is accepted, and the outcome (how many
approvals, four eyes, the requester, the rule's name) travels in the workflow's input and is
recorded on the operation; so changing the policy never changes an operation already waiting.

The token is shown once to the requester when they may decide themselves; only its SHA-256 is
stored (the record) and carried (the workflow). Owners decide with their own key, no token
needed. Notifications carry signed links instead (`clusterflow.approval_links`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clusterflow.api.read_caches import ReadCaches
from clusterflow.contracts.labels import Selector, SelectorError, parse_selector
from clusterflow.contracts.operations import ApprovalRequirement, OperationType
from clusterflow.records.db import Conn
from clusterflow.records.operations import Approval, ApprovalRule
from clusterflow.records.organizations import Principal, approval_policy

# The kinds of operation a policy names, with the organization's defaults.
OPERATION_KINDS: tuple[str, ...] = ("clusterDeploy", "clusterUpdate", "minorVersionUpgrade", "clusterDelete")
DEFAULT_KINDS: dict[str, bool] = {
    "clusterDeploy": False,
    "clusterUpdate": False,
    "minorVersionUpgrade": True,
    "clusterDelete": True,
}
MAX_APPROVALS = 10
DEFAULT_RULE = "default"


@dataclass(frozen=True)
class PolicyRule:
    """A rule scoped by cluster labels: on matching clusters, `operations` are the kinds that wait."""

    name: str
    selector: Selector
    operations: frozenset[str]
    approvals_required: int | None = None  # None: the organization's
    require_different_approver: bool | None = None

    def document(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "name": self.name,
            "labelSelector": str(self.selector),
            "operations": [k for k in OPERATION_KINDS if k in self.operations],
        }
        if self.approvals_required is not None:
            value["approvalsRequired"] = self.approvals_required
        if self.require_different_approver is not None:
            value["requireDifferentApprover"] = self.require_different_approver
        return value


@dataclass(frozen=True)
class Policy:
    """An organization's approval policy, as stored (`document`) and evaluated (`evaluate`)."""

    kinds: frozenset[str]
    approvals_required: int = 1
    require_different_approver: bool = False
    rules: tuple[PolicyRule, ...] = ()

    def document(self) -> dict[str, Any]:
        return {k: k in self.kinds for k in OPERATION_KINDS} | {
            "approvalsRequired": self.approvals_required,
            "requireDifferentApprover": self.require_different_approver,
            "rules": [r.document() for r in self.rules],
        }

    def evaluate(self, kind: str, labels: dict[str, str]) -> Evaluation | None:
        """The approval an operation of `kind` on a cluster with `labels` needs, or None."""
        for rule in self.rules:
            if rule.selector.matches(labels):
                if not _needs(rule.operations, kind):
                    return None
                return Evaluation(
                    rule=ApprovalRule(rule.name, str(rule.selector)),
                    reason=f"{_WHAT[kind]} on a cluster matching {rule.selector} (rule {rule.name}) "
                    "needs an owner's approval",
                    approvals_required=rule.approvals_required or self.approvals_required,
                    require_different_approver=(
                        self.require_different_approver
                        if rule.require_different_approver is None
                        else rule.require_different_approver
                    ),
                )
        if not _needs(self.kinds, kind):
            return None
        return Evaluation(
            rule=ApprovalRule(DEFAULT_RULE),
            reason=f"{_WHAT[kind]} needs an owner's approval",
            approvals_required=self.approvals_required,
            require_different_approver=self.require_different_approver,
        )

    def loosened_by(self, before: dict[str, str], after: dict[str, str]) -> list[str]:
        """The operation kinds that would need less approval on a cluster relabelled from `before`
        to `after` (none, fewer approvals, or no four eyes): an editor may not relabel a cluster
        out of a rule that holds them to an owner's decision."""
        loosened = []
        for kind in OPERATION_KINDS:
            was, now = self.evaluate(kind, before), self.evaluate(kind, after)
            if was is None:
                continue
            if (
                now is None
                or now.approvals_required < was.approvals_required
                or (was.require_different_approver and not now.require_different_approver)
            ):
                loosened.append(kind)
        return loosened


_WHAT = {
    "clusterDeploy": "deploying a cluster",
    "clusterUpdate": "updating a cluster",
    "minorVersionUpgrade": "a Kubernetes minor-version upgrade",
    "clusterDelete": "deleting a cluster",
}


def _needs(kinds: frozenset[str], kind: str) -> bool:
    # `clusterUpdate` covers every update, minor upgrades included.
    return kind in kinds or (kind == "minorVersionUpgrade" and "clusterUpdate" in kinds)


@dataclass(frozen=True)
class Evaluation:
    rule: ApprovalRule
    reason: str
    approvals_required: int
    require_different_approver: bool


class PolicyError(ValueError):
    """A stored or submitted policy that does not hold together; `field` names the part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def rule_from_document(index: int, value: dict[str, Any]) -> PolicyRule:
    """A rule from its API document (`ApprovalPolicyRule`), or PolicyError naming the field."""
    where = f"rules[{index}]"
    text = str(value.get("labelSelector") or "")
    environment = value.get("environment")
    if environment:
        text = ",".join(p for p in (text, f"env={environment}") if p)
    if not text:
        raise PolicyError(f"{where}.labelSelector", "a rule needs a labelSelector or an environment")
    try:
        selector = parse_selector(text)
    except SelectorError as err:
        field = "labelSelector" if value.get("labelSelector") else "environment"
        raise PolicyError(f"{where}.{field}", str(err)) from None
    return PolicyRule(
        name=str(value.get("name") or f"rule-{index + 1}"),
        selector=selector,
        operations=frozenset(str(k) for k in value.get("operations") or ()),
        approvals_required=value.get("approvalsRequired"),
        require_different_approver=value.get("requireDifferentApprover"),
    )


def parse_policy(stored: dict[str, Any] | None) -> Policy:
    """The policy a stored document means; keys it lacks take the defaults."""
    stored = stored or {}
    kinds = {k for k, on in DEFAULT_KINDS.items() if bool(stored.get(k, on))}
    return Policy(
        kinds=frozenset(kinds),
        approvals_required=int(stored.get("approvalsRequired") or 1),
        require_different_approver=bool(stored.get("requireDifferentApprover", False)),
        rules=tuple(rule_from_document(i, r) for i, r in enumerate(stored.get("rules") or ())),
    )


@dataclass(frozen=True)
class IssuedApproval:
    token: str
    requirement: ApprovalRequirement
    record: Approval

    def shown_to(self, requester: Principal) -> bool:
        """Whether the requester sees the token: only if they may decide themselves."""
        return requester.has_role(self.requirement.required_role) and not self.requirement.require_different_approver


def issue(
    reason: str,
    window_seconds: float,
    plan_hash: str | None = None,
    *,
    evaluation: Evaluation | None = None,
    requested_by: str | None = None,
) -> IssuedApproval:
    token = "cfa_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode())
    expires = datetime.now(UTC) + timedelta(seconds=window_seconds)
    rule = evaluation.rule if evaluation else ApprovalRule(DEFAULT_RULE)
    required = evaluation.approvals_required if evaluation else 1
    four_eyes = evaluation.require_different_approver if evaluation else False
    return IssuedApproval(
        token=token,
        requirement=ApprovalRequirement(
            token_sha256=digest.hexdigest(),
            expires_at=expires.isoformat(),
            required_role="owner",
            plan_hash=plan_hash,
            reason=reason,
            approvals_required=required,
            require_different_approver=four_eyes,
            requested_by=requested_by,
            rule=rule.name,
        ),
        record=Approval(
            token_hash=digest.digest(),
            expires_at=expires,
            required_role="owner",
            plan_hash=plan_hash,
            required_count=required,
            require_different_approver=four_eyes,
            rule=rule,
        ),
    )


async def _policy(conn: Conn, organization_id: str, caches: ReadCaches | None) -> dict[str, Any]:
    if caches is None:
        return await approval_policy(conn, organization_id)
    cached = caches.approval_policies.get(organization_id)
    if cached is not None:
        return cached
    with caches.approval_policies.reading(organization_id) as read:
        policy = await approval_policy(conn, organization_id)
        read.store(policy)
    return policy


async def current_policy(conn: Conn, organization_id: str, caches: ReadCaches | None = None) -> Policy:
    """The organization's approval policy as it stands now."""
    return parse_policy(await _policy(conn, organization_id, caches))


def operation_kind(operation_type: str, minor_upgrade: bool = False) -> str | None:
    """The policy's name for an operation, None for kinds no policy covers."""
    if operation_type == OperationType.CLUSTER_DELETE:
        return "clusterDelete"
    if operation_type == OperationType.CLUSTER_DEPLOY:
        return "clusterDeploy"
    if operation_type == OperationType.CLUSTER_UPDATE:
        return "minorVersionUpgrade" if minor_upgrade else "clusterUpdate"
    return None


async def issue_if_required(
    conn: Conn,
    organization_id: str,
    operation_type: str,
    window_seconds: float,
    *,
    minor_upgrade: bool = False,
    plan_hash: str | None = None,
    caches: ReadCaches | None = None,
    labels: dict[str, str] | None = None,
    requested_by: str | None = None,
) -> IssuedApproval | None:
    """The approval this operation needs under its organization's policy, or None.

    The policy comes from `caches` when they hold it (`api/read_caches.py`)."""
    kind = operation_kind(operation_type, minor_upgrade)
    if kind is None:
        return None
    evaluation = parse_policy(await _policy(conn, organization_id, caches)).evaluate(kind, labels or {})
    if evaluation is None:
        return None
    return issue(evaluation.reason, window_seconds, plan_hash, evaluation=evaluation, requested_by=requested_by)
