"""Operations: types, statuses, error codes, and one dataclass per workflow and activity input
and result.

These cross the Temporal boundary (API -> workflow -> activities), so they only ever grow
optional fields with defaults; renaming or removing a field breaks running workflows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from clusterflow.contracts.changes import UpdatePlan
from clusterflow.contracts.cluster import ClusterDefinition


class OperationType(StrEnum):
    CLUSTER_DEPLOY = "CLUSTER_DEPLOY"
    CLUSTER_UPDATE = "CLUSTER_UPDATE"
    CLUSTER_DELETE = "CLUSTER_DELETE"
    CLUSTER_REGISTER = "CLUSTER_REGISTER"
    CLUSTER_UNREGISTER = "CLUSTER_UNREGISTER"
    CLOUD_CONNECT = "CLOUD_CONNECT"
    KUBECONFIG_GENERATE = "KUBECONFIG_GENERATE"
    CLUSTER_RESYNC = "CLUSTER_RESYNC"
    UPDATE_RUN = "UPDATE_RUN"  # a fleet update run; its children are CLUSTER_UPDATE operations


class OperationStatus(StrEnum):
    PENDING = "PENDING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


TERMINAL_STATUSES = frozenset(
    {OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED, OperationStatus.REJECTED}
)
ACTIVE_STATUSES = frozenset(set(OperationStatus) - TERMINAL_STATUSES)


class ClusterState(StrEnum):
    PROVISIONING = "PROVISIONING"
    ACTIVE = "ACTIVE"
    UPDATING = "UPDATING"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"


class ErrorCode(StrEnum):
    """Stable error codes a client may branch on. Never renumber or reuse one."""

    PHASE_FAILED = "PHASE_FAILED"
    SIMULATED_FAILURE = "SIMULATED_FAILURE"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    PHASE_TIMED_OUT = "PHASE_TIMED_OUT"
    INVALID_SPEC = "INVALID_SPEC"
    ORCHESTRATOR_UNAVAILABLE = "ORCHESTRATOR_UNAVAILABLE"
    OPERATION_ABANDONED = "OPERATION_ABANDONED"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    TEARDOWN_INCOMPLETE = "TEARDOWN_INCOMPLETE"
    UPDATE_FAILED = "UPDATE_FAILED"
    INTERNAL = "INTERNAL"
    # Cloud provider failures (gcp, azure; aws uses the same codes).
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    CLOUD_AUTH_FAILED = "CLOUD_AUTH_FAILED"
    CLOUD_CONFLICT = "CLOUD_CONFLICT"
    CLOUD_BUSY = "CLOUD_BUSY"
    CLOUD_THROTTLED = "CLOUD_THROTTLED"
    CLOUD_UNAVAILABLE = "CLOUD_UNAVAILABLE"
    CLOUD_REJECTED = "CLOUD_REJECTED"
    CLOUD_NOT_FOUND = "CLOUD_NOT_FOUND"
    CLOUD_OPERATION_FAILED = "CLOUD_OPERATION_FAILED"
    PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"
    # The operation's record refused a write for good (or stayed away past its deadline).
    RECORD_WRITE_FAILED = "RECORD_WRITE_FAILED"


@dataclass
class OperationError:
    code: str
    message: str
    retryable: bool = False


@dataclass
class ExecutionPolicy:
    """How patiently activities run, chosen by the caller from settings at enqueue time.

    Carried in the input (rather than read by the workflow) because a workflow must not read
    its environment, and so a replay on another worker builds the same commands.
    """

    retry_initial_seconds: float = 2.0
    retry_max_interval_seconds: float = 60.0
    max_attempts: int = 5
    heartbeat_timeout_seconds: float = 30.0
    phase_timeout_seconds: float = 3 * 3600.0
    record_timeout_seconds: float = 30.0
    # Runs of a phase lost to our own infrastructure (a worker that died, a Temporal outage past
    # the heartbeat timeout) are retried without spending `max_attempts`, up to this many times
    # and within `phase_deadline_seconds` of the phase's first run.
    max_infrastructure_retries: int = 20
    phase_deadline_seconds: float = 6 * 3600.0
    # How long one record write keeps retrying a database that is away before the operation
    # ends FAILED with RECORD_WRITE_FAILED.
    record_deadline_seconds: float = 3600.0


ROLE_ORDER = ("viewer", "editor", "admin", "owner")


@dataclass
class ApprovalRequirement:
    """An operation that waits for a decision before doing anything.

    Only the token's SHA-256 travels here; the token itself is shown once to the requester.
    The policy is evaluated once, at enqueue, and carried here whole, so the workflow's validator
    decides by the rules the operation was accepted under, whatever the policy says later.
    """

    token_sha256: str
    expires_at: str  # ISO 8601, UTC
    required_role: str = "owner"
    plan_hash: str | None = None
    reason: str = ""
    approvals_required: int = 1  # distinct approvers needed; one rejection ends the operation
    require_different_approver: bool = False  # four eyes: the requester cannot decide
    requested_by: str | None = None  # the requesting key, refused under four eyes
    rule: str = "default"  # the name of the policy rule that asked for the approval


@dataclass
class DeployInput:
    operation_id: str
    organization_id: str
    cluster_id: str
    cluster_name: str
    provider: str
    region: str
    spec: dict[str, Any]
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)
    approval: ApprovalRequirement | None = None
    definition: ClusterDefinition | None = None


@dataclass
class DeleteInput:
    operation_id: str
    organization_id: str
    cluster_id: str
    cluster_name: str
    provider: str
    region: str
    spec: dict[str, Any]
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)
    approval: ApprovalRequirement | None = None
    # Deploys this delete pre-empts: they are cancelled (and clean up) before teardown.
    preempts: list[str] = field(default_factory=list)
    # The cluster's state before the delete, restored if the delete is rejected.
    previous_state: str = "ACTIVE"
    definition: ClusterDefinition | None = None


@dataclass
class UpdateInput:
    operation_id: str
    organization_id: str
    cluster_id: str
    cluster_name: str
    provider: str
    region: str
    spec: dict[str, Any]
    # The planned change, its inverse (applied phase by phase in reverse if the update fails or
    # is cancelled) and the cluster as the record states it before and after.
    plan: UpdatePlan
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)
    approval: ApprovalRequirement | None = None
    definition: ClusterDefinition | None = None


@dataclass
class OperationOutcome:
    operation_id: str
    status: str
    error: OperationError | None = None
    result: dict[str, Any] | None = None


# --- activity contracts -------------------------------------------------------------------


@dataclass
class BeginInput:
    operation_id: str
    awaiting_approval: bool = False


@dataclass
class DecideInput:
    """An approval decision, as the API forwards it (the actor's role comes from their key).

    The API sends the presented token's SHA-256, never the token: update inputs are kept in
    the workflow history, which must hold no secret. An owner deciding with their own key sends
    no token (None). A signed notification link is checked by the API (its signature needs the
    vault key) and arrives as `link_sha256`, which the workflow accepts once.
    """

    token_sha256: str | None
    action: str  # APPROVE or REJECT
    actor: str
    actor_role: str
    comment: str | None = None
    plan_hash: str | None = None
    link_sha256: str | None = None


@dataclass
class DecisionResult:
    status: str  # AWAITING_APPROVAL while approvals remain, then RUNNING or REJECTED
    remaining: int = 0  # approvals still needed after this decision


@dataclass
class DecisionRecord:
    operation_id: str
    decision: str  # APPROVE, REJECT or EXPIRED
    decided_by: str
    comment: str | None = None


@dataclass
class ClusterChange:
    cluster_id: str
    state: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class CancelRequest:
    operation_id: str
    requested_by: str


@dataclass
class WaitForOperations:
    operation_ids: list[str]


@dataclass
class BeginResult:
    """Whether the workflow should proceed: false when the record already ended (for example
    the API marked it FAILED because it could not confirm the workflow start)."""

    proceed: bool
    status: str


@dataclass
class EventInput:
    operation_id: str
    event_key: str
    message: str
    kind: str = "log"
    level: str = "INFO"
    phase: str | None = None
    progress_percentage: int | None = None
    raw_output: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class FinishInput:
    operation_id: str
    status: str
    message: str
    error: OperationError | None = None
    result: dict[str, Any] | None = None
    cluster_state: str | None = None
    cluster_fields: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
