"""The operation record and its events, as clients poll them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from clusterflow.api.schemas.common import Sparse, Strict, absent
from clusterflow.contracts.operations import OperationStatus, OperationType

EventKind = Literal["progress", "phase", "log", "status"]
EventLevel = Literal["INFO", "WARN", "ERROR"]


class OperationErrorView(BaseModel):
    code: str
    message: str
    retryable: bool


class OperationEvent(BaseModel):
    sequence: int
    timestamp: str
    kind: EventKind = Field(description="progress, phase, log or status")
    level: EventLevel
    phase: str | None
    progressPercentage: int | None
    message: str
    rawOutput: str | None = None
    labels: dict[str, str] = {}


Role = Literal["viewer", "editor", "admin", "owner"]


class ApprovalReceived(BaseModel):
    """One owner's decision on the operation."""

    by: str = Field(description="The API key that decided")
    at: str
    decision: Literal["APPROVE", "REJECT"]
    comment: str | None = None


class ApprovalRuleView(BaseModel):
    """The policy rule that asked for the approval, fixed when the operation was accepted."""

    name: str = Field(description="`default` (the organization's flags) or the name of a label-scoped rule")
    labelSelector: str | None = None


class ApprovalView(BaseModel):
    requiredRole: Role
    expiresAt: str | None
    planHash: str | None = None
    decision: Literal["APPROVE", "REJECT", "EXPIRED"] | None = Field(
        default=None, description="The final word: the approval that completed the count, a rejection, or expiry"
    )
    decidedBy: str | None = None
    decidedAt: str | None = None
    comment: str | None = None
    required: int = Field(default=1, description="Distinct owners' approvals the operation needs")
    received: list[ApprovalReceived] = Field(default=[], description="Every decision so far, in order")
    remaining: int = Field(default=0, description="Approvals still needed (0 once decided)")
    requireDifferentApprover: bool = Field(
        default=False, description="Four eyes: the requester (`userId`) cannot decide this operation"
    )
    rule: ApprovalRuleView | None = None


class CancellationView(BaseModel):
    requestedAt: str
    requestedBy: str | None
    forced: bool


class OperationMetadata(Sparse):
    """What the API and the workflows record beside an operation; each key only where it applies."""

    cleanedUp: list[str] | None = absent("Cancelled deploy, delete, rolled-back update: what was removed or restored")
    leftBehind: list[str] | None = absent("Resources that could not be removed or restored (empty when clean)")
    forced: bool | None = absent("A force cancel terminated the workflow")
    preempts: list[str] | None = absent("Delete: the deploys it cancelled first")
    planHash: str | None = absent("Update: the plan the request was approved against")
    targetVersion: str | None = absent("Update: the Kubernetes version asked for")
    architecture: str | None = absent("Registration: the cluster's node architecture")
    durationSeconds: int | None = absent("Kubeconfig: how long the credential is valid")
    provider: str | None = absent("Cloud connect: the cloud")
    accountId: str | None = absent("AWS connect: the account connected")
    cloudAccountId: str | None = absent("AWS connect: the cloud-account record")
    level: Literal["read", "manage"] | None = absent("AWS connect: the access level")


class ClusterOutputs(Sparse):
    kubernetesVersion: str | None = absent("Minor version, as the record keeps it")
    currentKubernetesVersion: str | None = absent("Patch version the cloud reports")
    endpoint: str | None = absent()
    cloudResourceId: str | None = absent("EKS ARN, GKE self link, AKS resource ID")
    accountId: str | None = absent("The cloud account the cluster lives in")


class NetworkOutputs(BaseModel):
    vpcId: str
    subnetIds: list[str]


class CloudIdentity(Sparse):
    """The identity a federated cloud connection acts as."""

    serviceAccountEmail: str | None = absent()
    projectId: str | None = absent()
    tenantId: str | None = absent()
    clientId: str | None = absent()
    subscriptionId: str | None = absent()


class OperationResult(Sparse):
    """What a finished operation produced; the keys depend on its type."""

    cluster: ClusterOutputs | None = absent("Deploy: the cluster as the cloud reports it")
    network: NetworkOutputs | None = absent("Deploy: the network it created or used")
    kubernetesVersion: str | None = absent("Registration: the version the agent reports")
    nodeCount: int | None = absent("Registration: nodes the agent reports")
    architecture: str | None = absent("Registration: the agent's architecture")
    agentRemoved: bool | None = absent("Unregister: the agent removed itself")
    credentialRotated: bool | None = absent("Resync: the agent's credential rotated")
    expiresAt: str | None = absent("Kubeconfig: when the issued credential expires")
    connectionStatus: Literal["CONNECTED", "FAILED"] | None = absent("AWS connect")
    accountId: str | None = absent("AWS connect: the account")
    roleArn: str | None = absent("AWS connect: the role assumed")
    level: Literal["read", "manage"] | None = absent("AWS connect: the access level")
    checks: int | None = absent("AWS connect: checks made until the role worked")
    status: str | None = absent("GCP or Azure connect: the account's status")
    identity: CloudIdentity | None = absent("GCP or Azure connect: who it acts as")


class Operation(BaseModel):
    operationId: str
    organizationId: str
    operationType: OperationType
    status: OperationStatus
    currentPhase: str | None
    progressPercentage: int
    message: str | None
    error: OperationErrorView | None
    clusterId: str | None
    clusterName: str | None
    userId: str | None = Field(description="The API key that requested the operation")
    attempt: int
    metadata: OperationMetadata
    result: OperationResult | None
    createdAt: str
    startedAt: str | None
    lastUpdate: str
    completedAt: str | None
    isCancelable: bool
    isApprovable: bool
    approval: ApprovalView | None = None
    cancellation: CancellationView | None = None
    recentEvents: list[OperationEvent] = []
    eventsRetiredAt: str | None = Field(
        default=None,
        description="When retention removed this finished operation's event log; the record keeps its summary "
        "and final status (`CLUSTERFLOW_RETENTION_EVENTS_DAYS`)",
    )


class OperationPage(BaseModel):
    operations: list[Operation]
    totalCount: int = Field(
        description="Operations matching the filters: exact up to CLUSTERFLOW_EXACT_TOTAL_LIMIT (1,000 by "
        "default), beyond it the database planner's estimate (see `totalCountExact`)"
    )
    totalCountExact: bool = Field(
        default=True,
        description="False when `totalCount` is an estimate: more operations matched than are counted exactly, "
        "and `totalCount` is above that limit. Follow `nextPageToken` to read them all.",
    )
    nextPageToken: str | None = None


class EventPage(BaseModel):
    events: list[OperationEvent]
    nextCursor: int = Field(description="Pass as ?cursor= to continue after the last event")
    status: OperationStatus
    terminal: bool
    eventsRetiredAt: str | None = Field(
        default=None,
        description="Set when retention removed the operation's events: the page is empty for every cursor, "
        "and the operation record keeps its summary and final status",
    )


class ApprovalDecision(Strict):
    action: Literal["APPROVE", "REJECT"]
    token: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Optional: an owner decides with their own key; a token given must be the operation's",
    )
    comment: str | None = Field(default=None, max_length=1000)
    planHash: str | None = Field(
        default=None, max_length=100, description="The plan the approver reviewed; refused if the plan changed"
    )


class DecisionOutcome(BaseModel):
    operationId: str
    status: OperationStatus = Field(description="AWAITING_APPROVAL while approvals remain, then RUNNING or REJECTED")
    decision: Literal["APPROVE", "REJECT"]
    remaining: int = Field(default=0, description="Approvals still needed after this decision")


class CancelOutcome(BaseModel):
    operationId: str
    status: OperationStatus
    forced: bool
    terminated: bool = Field(description="True when a force cancel had to terminate the workflow")
