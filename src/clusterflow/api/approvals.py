"""Approval policy and tokens.

Which operations wait for an owner is organization policy, stored in
`organizations.approval_policy` and changed through `/v1/organizations/{orgId}/approval-policy`:
`clusterDelete` (default on) and `minorVersionUpgrade` (default on), plus `clusterUpdate` (any
update) and `clusterDeploy` (default off). The token is shown once to the requester when they
may decide themselves; only its SHA-256 is stored (the record) and carried (the workflow).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clusterflow.api.read_caches import ReadCaches
from clusterflow.contracts.operations import ApprovalRequirement, OperationType
from clusterflow.records.db import Conn
from clusterflow.records.operations import Approval
from clusterflow.records.organizations import approval_policy

DEFAULT_POLICY: dict[str, bool] = {
    "clusterDeploy": False,
    "clusterUpdate": False,
    "minorVersionUpgrade": True,
    "clusterDelete": True,
}


def effective_policy(stored: dict[str, Any] | None) -> dict[str, bool]:
    return DEFAULT_POLICY | {k: bool(v) for k, v in (stored or {}).items() if k in DEFAULT_POLICY}


def approval_reason(policy: dict[str, bool], operation_type: str, minor_upgrade: bool = False) -> str | None:
    """Why this operation needs approval under the policy, or None if it does not."""
    if operation_type == OperationType.CLUSTER_DELETE and policy["clusterDelete"]:
        return "deleting a cluster needs an owner's approval"
    if operation_type == OperationType.CLUSTER_DEPLOY and policy["clusterDeploy"]:
        return "deploying a cluster needs an owner's approval"
    if operation_type == OperationType.CLUSTER_UPDATE:
        if minor_upgrade and policy["minorVersionUpgrade"]:
            return "a Kubernetes minor-version upgrade needs an owner's approval"
        if policy["clusterUpdate"]:
            return "updating a cluster needs an owner's approval"
    return None


@dataclass
class IssuedApproval:
    token: str
    requirement: ApprovalRequirement
    record: Approval


def issue(reason: str, window_seconds: float, plan_hash: str | None = None) -> IssuedApproval:
    token = "cfa_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode())
    expires = datetime.now(UTC) + timedelta(seconds=window_seconds)
    return IssuedApproval(
        token=token,
        requirement=ApprovalRequirement(
            token_sha256=digest.hexdigest(),
            expires_at=expires.isoformat(),
            required_role="owner",
            plan_hash=plan_hash,
            reason=reason,
        ),
        record=Approval(token_hash=digest.digest(), expires_at=expires, required_role="owner", plan_hash=plan_hash),
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


async def issue_if_required(
    conn: Conn,
    organization_id: str,
    operation_type: str,
    window_seconds: float,
    *,
    minor_upgrade: bool = False,
    plan_hash: str | None = None,
    caches: ReadCaches | None = None,
) -> IssuedApproval | None:
    """The approval this operation needs under its organization's policy, or None.

    The policy comes from `caches` when they hold it (`api/read_caches.py`)."""
    policy = effective_policy(await _policy(conn, organization_id, caches))
    reason = approval_reason(policy, operation_type, minor_upgrade)
    return issue(reason, window_seconds, plan_hash) if reason else None
