"""Fleet update run documents: the request (a change and a strategy), the dry run's resolved
plan, and the run as it progresses.

Field names follow Azure Kubernetes Fleet Manager's update runs where they exist there
(`stages`, `groups`, `beforeGates`, `afterGates`, `maxConcurrency`) and the issue's elsewhere
(`afterStageWaitSeconds`, `failurePolicy`, `busyCluster`). Each document checks what it can see
alone (names unique, a group selects by IDs or by labels, a gate has what its type needs); what
needs the fleet (unknown clusters, a cluster in two groups) is checked by the command, with the
same 422 naming the field.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator

from clusterflow.api.schemas.common import Strict
from clusterflow.contracts.operations import OperationStatus
from clusterflow.contracts.update_runs import ChildStatus, GateStatus, RunStatus, UnitStatus

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
Weekday = Literal["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
ClockTime = Annotated[str, Field(max_length=5, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM")]
_PERCENT = re.compile(r"^([1-9][0-9]?|100)%$")


class MaintenanceWindowDoc(Strict):
    """A recurring window: the gate opens when the window next opens (or at once inside it)."""

    weekdays: Annotated[list[Weekday], Field(min_length=1, max_length=7)]
    start: ClockTime
    end: ClockTime
    timeZone: Annotated[str, Field(max_length=64)] = "UTC"

    @field_validator("timeZone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


class GateDoc(Strict):
    type: Literal["approval", "notBefore"]
    name: Annotated[str, Field(max_length=100)] | None = None
    at: Annotated[str, Field(max_length=40, description="notBefore: an ISO 8601 instant with its offset")] | None = None
    window: MaintenanceWindowDoc | None = None

    @field_validator("at")
    @classmethod
    def _instant(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as err:
            raise ValueError("not an ISO 8601 date and time") from err
        if moment.tzinfo is None:
            raise ValueError("give the offset (e.g. Z or +02:00)")
        return moment.isoformat()

    @model_validator(mode="after")
    def _needs(self) -> GateDoc:
        if self.type == "notBefore" and (self.at is None) == (self.window is None):
            raise ValueError("a notBefore gate takes exactly one of `at` and `window`")
        if self.type == "approval" and (self.at is not None or self.window is not None):
            raise ValueError("an approval gate takes no `at` or `window`")
        return self


class GroupDoc(Strict):
    name: Name
    clusterIds: Annotated[list[Annotated[str, Field(max_length=80)]], Field(min_length=1, max_length=1000)] | None = (
        None
    )
    labelSelector: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    maxConcurrency: Annotated[int, Field(ge=1, le=1000)] | Annotated[str, Field(max_length=4)] = Field(
        default=1, description="clusters updated at once: a number, or a percentage of the group such as `25%`"
    )
    beforeGates: Annotated[list[GateDoc], Field(max_length=10)] = []
    afterGates: Annotated[list[GateDoc], Field(max_length=10)] = []

    @field_validator("maxConcurrency")
    @classmethod
    def _concurrency(cls, value: int | str) -> int | str:
        if isinstance(value, str) and not _PERCENT.match(value):
            raise ValueError("a number of clusters, or a percentage from 1% to 100%")
        return value

    @model_validator(mode="after")
    def _one_selector(self) -> GroupDoc:
        if (self.clusterIds is None) == (self.labelSelector is None):
            raise ValueError("a group selects clusters by exactly one of `clusterIds` and `labelSelector`")
        return self


class FailurePolicyDoc(Strict):
    """Halt the run when more than this many (or this percentage) of a stage's clusters fail."""

    maxFailed: Annotated[int, Field(ge=0, le=10000)] | None = None
    maxFailedPercent: Annotated[int, Field(ge=0, le=100)] | None = None

    @model_validator(mode="after")
    def _one(self) -> FailurePolicyDoc:
        if self.maxFailed is not None and self.maxFailedPercent is not None:
            raise ValueError("give `maxFailed` or `maxFailedPercent`, not both")
        return self


class StageDoc(Strict):
    name: Name
    groups: Annotated[list[GroupDoc], Field(min_length=1, max_length=50)]
    afterStageWaitSeconds: Annotated[int, Field(ge=0, le=30 * 86400)] = 0
    beforeGates: Annotated[list[GateDoc], Field(max_length=10)] = []
    afterGates: Annotated[list[GateDoc], Field(max_length=10)] = []
    failurePolicy: FailurePolicyDoc = FailurePolicyDoc()

    @field_validator("groups")
    @classmethod
    def _unique(cls, groups: list[GroupDoc]) -> list[GroupDoc]:
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ValueError("group names must be unique in a stage")
        return groups


class BusyClusterDoc(Strict):
    """A cluster busy with another operation when its turn comes: wait (at most
    `maxWaitSeconds`, then skip it) or skip it at once."""

    action: Literal["wait", "skip"] = "wait"
    maxWaitSeconds: Annotated[int, Field(ge=0, le=7 * 86400)] = 3600


class StrategyDoc(Strict):
    stages: Annotated[list[StageDoc], Field(min_length=1, max_length=20)]
    busyCluster: BusyClusterDoc = BusyClusterDoc()

    @field_validator("stages")
    @classmethod
    def _unique(cls, stages: list[StageDoc]) -> list[StageDoc]:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError("stage names must be unique")
        return stages


PhaseName = Literal["VALIDATE", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"]


class LocalRunDoc(Strict):
    """The local simulator's pacing and failure injection for the run's local clusters."""

    phaseSeconds: Annotated[float, Field(ge=0, le=3600)] | None = None
    failAt: PhaseName | None = None
    failTimes: Annotated[int, Field(ge=0, le=100)] | None = None
    clusterIds: Annotated[list[Annotated[str, Field(max_length=80)]], Field(max_length=1000)] | None = Field(
        default=None, description="inject the failure into these clusters only (all when absent)"
    )


class RunChangeDoc(Strict):
    kubernetesVersion: Annotated[str, Field(max_length=16, pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")] = Field(
        description="the version every cluster moves to, one minor version above the one it runs; "
        "node groups follow it (their node image moves with the version)"
    )
    local: LocalRunDoc | None = None


class UpdateRunRequest(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    change: RunChangeDoc
    strategy: StrategyDoc | None = None
    strategyId: (
        Annotated[str, Field(max_length=80, description="a saved strategy (`/v1/update-strategies`)")] | None
    ) = None

    @model_validator(mode="after")
    def _one_strategy(self) -> UpdateRunRequest:
        if (self.strategy is None) == (self.strategyId is None):
            raise ValueError("give exactly one of `strategy` and `strategyId`")
        return self

    @property
    def plan_strategy(self) -> StrategyDoc:
        """The strategy the run follows (a saved one is copied in when the run is planned)."""
        assert self.strategy is not None
        return self.strategy


class SavedStrategyInput(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    strategy: StrategyDoc


class SavedStrategyView(BaseModel):
    id: str
    name: str
    strategy: StrategyDoc
    createdBy: str | None = None
    createdAt: datetime
    updatedAt: datetime


class SavedStrategyList(BaseModel):
    strategies: list[SavedStrategyView]


# --- answers ------------------------------------------------------------------------------------


class GateView(BaseModel):
    id: str = Field(description="names the gate to approve: POST /v1/update-runs/{runId}/gates/{gateId}/approve")
    type: Literal["approval", "notBefore"]
    timing: Literal["before", "after"]
    name: str | None = None
    at: str | None = None
    window: MaintenanceWindowDoc | None = None
    status: GateStatus = GateStatus.PENDING
    opensAt: str | None = None
    decidedBy: str | None = None


class PreflightCheckView(BaseModel):
    name: str
    category: str
    description: str
    status: str
    remediation: str


class PlannedClusterView(BaseModel):
    clusterId: str
    clusterName: str
    provider: str
    order: int = Field(description="the cluster's place in the run, from 1")
    currentVersion: str | None
    targetVersion: str
    phases: list[str]
    nodeGroupChanges: list[str]
    estimatedSeconds: int
    warnings: list[str]
    preflightChecks: list[PreflightCheckView]


class PlannedGroupView(BaseModel):
    name: str
    maxConcurrency: int = Field(description="clusters at once, resolved from a number or a percentage")
    beforeGates: list[GateView]
    afterGates: list[GateView]
    clusters: list[PlannedClusterView]


class PlannedStageView(BaseModel):
    name: str
    order: int
    earliestStart: str = Field(
        description="the earliest the stage can start: after the stages before it (estimated), their soaks "
        "and its notBefore gates; approvals can only make it later"
    )
    afterStageWaitSeconds: int
    failureThreshold: int = Field(description="failed clusters the stage tolerates; one more halts the run")
    beforeGates: list[GateView]
    afterGates: list[GateView]
    groups: list[PlannedGroupView]


class SkippedClusterView(BaseModel):
    clusterId: str
    clusterName: str
    stage: str
    group: str
    reason: str


class RunPlanView(BaseModel):
    valid: bool
    message: str
    name: str
    targetVersion: str
    totalClusters: int
    approvalRequired: bool
    stages: list[PlannedStageView]
    skipped: list[SkippedClusterView]


class RunClusterView(BaseModel):
    clusterId: str
    clusterName: str
    operationId: str | None = Field(description="the cluster's CLUSTER_UPDATE operation, once it started")
    status: ChildStatus
    reason: str | None = None
    targetVersion: str
    startedAt: datetime | None = None
    completedAt: datetime | None = None
    progressPercentage: int = 0
    message: str | None = None


class RunGroupView(BaseModel):
    name: str
    status: UnitStatus
    maxConcurrency: int
    startedAt: str | None = None
    completedAt: str | None = None
    beforeGates: list[GateView]
    afterGates: list[GateView]
    clusters: list[RunClusterView]


class RunStageView(BaseModel):
    name: str
    status: UnitStatus
    startedAt: str | None = None
    completedAt: str | None = None
    afterStageWaitSeconds: int
    failureThreshold: int
    succeeded: int
    failed: int
    skipped: int
    beforeGates: list[GateView]
    afterGates: list[GateView]
    groups: list[RunGroupView]


class RunSummary(BaseModel):
    total: int
    succeeded: int
    failed: int
    cancelled: int
    running: int
    skipped: int
    pending: int


class UpdateRunView(BaseModel):
    runId: str = Field(
        description="the run's operation ID (type UPDATE_RUN): its events and stream are the operation's"
    )
    name: str
    status: RunStatus
    operationStatus: OperationStatus
    message: str | None = None
    targetVersion: str
    createdAt: datetime
    startedAt: datetime | None = None
    completedAt: datetime | None = None
    isCancelable: bool
    summary: RunSummary
    stages: list[RunStageView]
    skipped: list[SkippedClusterView]


class UpdateRunListItem(BaseModel):
    runId: str
    name: str
    status: RunStatus
    operationStatus: OperationStatus
    targetVersion: str
    createdAt: datetime
    completedAt: datetime | None = None
    message: str | None = None


class UpdateRunList(BaseModel):
    runs: list[UpdateRunListItem]
    nextPageToken: str | None = None


class SkipRequest(Strict):
    stage: Name
    group: Name | None = None


class GateApproval(Strict):
    comment: Annotated[str, Field(max_length=1000)] | None = None


class RunControlOutcome(BaseModel):
    runId: str
    status: RunStatus
    message: str
