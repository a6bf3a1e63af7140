"""Fleet update runs: the request (a change and a strategy), the resolved plan, and the run's state.

A run upgrades many clusters the way Azure Kubernetes Fleet Manager's update runs do: stages one
after another, groups inside a stage in parallel, clusters inside a group up to a concurrency,
a soak after each stage, gates (an owner's approval, a scheduled start) before or after a stage
or a group, and a failure policy that halts the run. Each cluster's update is an ordinary
CLUSTER_UPDATE operation, started by the run as a child workflow.

Three shapes, because three parties need different things:
- `RunStrategy` / `RunChange`: what the user asked for, validated by the API.
- `RunPlan`: the request resolved against the fleet at enqueue time (which clusters land where,
  the concurrency each group really gets, the failure threshold in clusters). The parent
  workflow's input carries only this: cluster IDs, never specs, so a 1,000-cluster run keeps a
  small history. Each cluster's own update input is stored beside the run (records) and read
  by the activity that opens the cluster's operation.
- `RunSnapshot`: the run as it progresses (stages, groups, gates and children with status),
  written to the record by the workflow and carried across continue-as-new.

Standard library only; frozen, so a value read from history can never be changed in place.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from clusterflow.contracts.cluster import Simulation
from clusterflow.contracts.operations import ApprovalRequirement, ExecutionPolicy, UpdateInput


class BusyBehaviour(StrEnum):
    """What a cluster busy with another operation gets when its turn comes."""

    WAIT = "WAIT"  # retry until `busyWaitSeconds` have passed, then skip it
    SKIP = "SKIP"


class GateKind(StrEnum):
    APPROVAL = "APPROVAL"
    NOT_BEFORE = "NOT_BEFORE"


class GateTiming(StrEnum):
    BEFORE = "BEFORE"
    AFTER = "AFTER"


class RunStatus(StrEnum):
    """The run's own status; its operation record says RUNNING through all the active ones."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # an operator paused it: running clusters finish, no new one starts
    HALTED = "HALTED"  # the failure policy stopped it; resume continues, cancel ends it
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


class UnitStatus(StrEnum):
    """A stage's or a group's status."""

    PENDING = "PENDING"
    WAITING = "WAITING"  # on a gate
    RUNNING = "RUNNING"
    SOAKING = "SOAKING"  # the stage's afterStageWaitSeconds
    SUCCEEDED = "SUCCEEDED"
    COMPLETED_WITH_FAILURES = "COMPLETED_WITH_FAILURES"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


class GateStatus(StrEnum):
    PENDING = "PENDING"
    WAITING = "WAITING"
    APPROVED = "APPROVED"
    PASSED = "PASSED"  # a notBefore gate whose time came
    SKIPPED = "SKIPPED"


class ChildStatus(StrEnum):
    """A cluster's place in the run; once it has an operation, that operation's status."""

    PLANNED = "PLANNED"
    WAITING_BUSY = "WAITING_BUSY"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


class ControlAction(StrEnum):
    PAUSE = "PAUSE"
    RESUME = "RESUME"
    SKIP = "SKIP"
    APPROVE_GATE = "APPROVE_GATE"


WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass(frozen=True)
class MaintenanceWindow:
    """Weekdays and a time range (HH:MM, end exclusive, may wrap past midnight) in a time zone."""

    weekdays: tuple[str, ...]
    start: str
    end: str
    time_zone: str = "UTC"

    def next_opening(self, after: datetime) -> datetime:
        """`after` itself if it falls inside the window, else the window's next start (UTC)."""
        zone = ZoneInfo(self.time_zone)
        here = after.astimezone(zone)
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        for offset in range(-1, 8):
            day = here.date() + timedelta(days=offset)
            if WEEKDAYS[day.weekday()] not in self.weekdays:
                continue
            opening = datetime.combine(day, start, zone)
            closing = datetime.combine(day, end, zone) + (timedelta(days=1) if end <= start else timedelta())
            if here < closing:
                return max(opening, here).astimezone(UTC)
        raise ValueError("the window names no weekday")


@dataclass(frozen=True)
class Gate:
    """A gate before or after a stage or group. `id` is unique in the run (`g1`, `g2`...), so an
    operator names the gate to approve; `not_before` is an ISO 8601 instant, `window` a
    recurring maintenance window (the gate opens at the window's next opening)."""

    id: str
    kind: GateKind
    timing: GateTiming
    name: str = ""
    not_before: str | None = None
    window: MaintenanceWindow | None = None


@dataclass(frozen=True)
class Concurrency:
    """`maxConcurrency`: a number of clusters, or a percentage of the group (at least one)."""

    value: int
    percent: bool = False

    def resolve(self, group_size: int) -> int:
        if not self.percent:
            return max(1, self.value)
        return max(1, math.floor(group_size * self.value / 100))

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


@dataclass(frozen=True)
class FailurePolicy:
    """Halt the stage (and so the run) when more than `max_failed` clusters (or percent of the
    stage's clusters) fail. The default, 0, halts at the first failure."""

    max_failed: int = 0
    percent: bool = False

    def threshold(self, stage_size: int) -> int:
        """Failures the stage tolerates; one more halts it."""
        if not self.percent:
            return self.max_failed
        return math.floor(stage_size * self.max_failed / 100)


@dataclass(frozen=True)
class ClusterSelector:
    """Clusters by ID, or by label selector (Kubernetes syntax, `contracts.labels`)."""

    cluster_ids: tuple[str, ...] = ()
    label_selector: str | None = None


@dataclass(frozen=True)
class GroupStrategy:
    name: str
    selector: ClusterSelector
    max_concurrency: Concurrency = Concurrency(1)
    gates: tuple[Gate, ...] = ()


@dataclass(frozen=True)
class StageStrategy:
    name: str
    groups: tuple[GroupStrategy, ...]
    after_stage_wait_seconds: int = 0
    gates: tuple[Gate, ...] = ()
    failure_policy: FailurePolicy = FailurePolicy()


@dataclass(frozen=True)
class RunStrategy:
    stages: tuple[StageStrategy, ...]
    busy: BusyBehaviour = BusyBehaviour.WAIT
    busy_wait_seconds: int = 3600


@dataclass(frozen=True)
class RunChange:
    """What each cluster's update applies. `simulation` paces the local simulator and injects
    failures; `simulation_cluster_ids` limits the injected failure to those clusters."""

    kubernetes_version: str
    simulation: Simulation | None = None
    simulation_cluster_ids: tuple[str, ...] = ()

    def simulation_for(self, cluster_id: str) -> Simulation | None:
        sim = self.simulation
        if sim is None or not self.simulation_cluster_ids or cluster_id in self.simulation_cluster_ids:
            return sim
        return Simulation(phase_seconds=sim.phase_seconds)


# --- the resolved plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedGroup:
    name: str
    cluster_ids: tuple[str, ...]
    max_concurrency: int
    gates: tuple[Gate, ...] = ()


@dataclass(frozen=True)
class PlannedStage:
    name: str
    groups: tuple[PlannedGroup, ...]
    after_stage_wait_seconds: int = 0
    gates: tuple[Gate, ...] = ()
    failure_threshold: int = 0  # failed clusters the stage tolerates; one more halts the run

    @property
    def size(self) -> int:
        return sum(len(g.cluster_ids) for g in self.groups)


@dataclass(frozen=True)
class SkippedCluster:
    cluster_id: str
    cluster_name: str
    stage: str
    group: str
    reason: str


@dataclass(frozen=True)
class RunPlan:
    stages: tuple[PlannedStage, ...]
    skipped: tuple[SkippedCluster, ...] = ()
    busy: BusyBehaviour = BusyBehaviour.WAIT
    busy_wait_seconds: int = 3600

    def gates(self) -> tuple[tuple[str, str | None, Gate], ...]:
        """Every gate with its stage and group (None for a stage's own gate), in plan order."""
        found: list[tuple[str, str | None, Gate]] = []
        for stage in self.stages:
            found += [(stage.name, None, g) for g in stage.gates]
            for group in stage.groups:
                found += [(stage.name, group.name, g) for g in group.gates]
        return tuple(found)


# --- the run as it progresses ---------------------------------------------------------------


def stage_key(stage: str) -> str:
    return f"stage/{stage}"


def group_key(stage: str, group: str) -> str:
    return f"group/{stage}/{group}"


@dataclass(frozen=True)
class UnitState:
    """A stage or group (`key`: `stage/<name>` or `group/<stage>/<name>`)."""

    key: str
    status: UnitStatus = UnitStatus.PENDING
    started_at: str | None = None
    completed_at: str | None = None
    failed: int = 0
    succeeded: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class GateState:
    id: str
    status: GateStatus = GateStatus.PENDING
    decided_by: str | None = None
    opens_at: str | None = None


@dataclass(frozen=True)
class ChildState:
    """A cluster the run could not hand to an operation (skipped, or waiting while busy); a
    cluster with an operation has that operation's status, read from its record."""

    cluster_id: str
    stage: str
    group: str
    status: ChildStatus = ChildStatus.PLANNED
    operation_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RunSnapshot:
    status: RunStatus = RunStatus.PENDING
    stage_index: int = 0
    message: str = ""
    units: tuple[UnitState, ...] = ()
    gates: tuple[GateState, ...] = ()
    children: tuple[ChildState, ...] = ()
    # Failures the stage already tolerated when an operator resumed a halted run.
    acknowledged_failures: int = 0
    controls: int = 0  # operator actions taken so far (numbers their events)
    skip_requested: tuple[str, ...] = ()  # stage and group keys an operator skipped


# --- workflow and activity contracts --------------------------------------------------------


@dataclass(frozen=True)
class UpdateRunInput:
    operation_id: str
    organization_id: str
    requested_by: str
    plan: RunPlan
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)
    approval: ApprovalRequirement | None = None
    # Set when the run continues as new between stages: where it got to.
    progress: RunSnapshot | None = None


@dataclass(frozen=True)
class RunControl:
    """An operator's action on a run, as the API forwards it (the role comes from the key)."""

    action: ControlAction
    actor: str
    actor_role: str
    stage: str | None = None  # SKIP: the stage, or the group's stage
    group: str | None = None  # SKIP: the group
    gate_id: str | None = None  # APPROVE_GATE
    comment: str | None = None


@dataclass(frozen=True)
class RunControlResult:
    status: RunStatus
    message: str


class OpenOutcome(StrEnum):
    OPENED = "OPENED"  # the cluster's CLUSTER_UPDATE operation exists: start (or await) its workflow
    BUSY = "BUSY"  # another operation runs on the cluster
    SKIPPED = "SKIPPED"  # the cluster cannot be updated now (gone, already on target, changed)


@dataclass(frozen=True)
class OpenChild:
    run_id: str
    cluster_id: str


@dataclass(frozen=True)
class SaveSnapshot:
    run_id: str
    snapshot: RunSnapshot
    event_key: str | None = None  # an event on the run's operation, when the change is news
    event_message: str | None = None
    event_level: str = "INFO"
    progress_percentage: int | None = None  # clusters finished of those planned, for the run's record


@dataclass(frozen=True)
class CloseChildren:
    """Cancel the run's child operations whose workflow never began (a cancel or skip landed
    between the operation's creation and its workflow's first step)."""

    run_id: str
    cluster_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class WindowOpening:
    window: MaintenanceWindow
    after: str  # ISO 8601 instant


@dataclass(frozen=True)
class OpenedChild:
    """The answer of opening a cluster's operation: what the run does with the cluster next."""

    outcome: OpenOutcome
    operation_id: str | None = None
    update: UpdateInput | None = None
    reason: str | None = None


# --- JSON: the record stores the plan and the snapshot as documents --------------------------


def _decode(kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _decode(inner[0], value)
    if origin is tuple:
        (item, _) = typing.get_args(kind)
        return tuple(_decode(item, v) for v in value)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        known = {f.name for f in dataclasses.fields(kind)}
        return kind(**{k: _decode(hints[k], v) for k, v in value.items() if k in known})
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return kind(value)
    return value


def plan_from_json(document: dict[str, Any]) -> RunPlan:
    """The `RunPlan` a record stored with `dataclasses.asdict`."""
    plan: RunPlan = _decode(RunPlan, document)
    return plan


def snapshot_from_json(document: dict[str, Any]) -> RunSnapshot:
    snapshot: RunSnapshot = _decode(RunSnapshot, document)
    return snapshot
