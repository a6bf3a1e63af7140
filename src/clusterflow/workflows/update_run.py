"""UPDATE_RUN: a fleet update run, one parent workflow over ordinary CLUSTER_UPDATE children.

Stages run in order, the groups of a stage in parallel, the clusters of a group up to its
`maxConcurrency` at once. Each cluster's update is the same `ClusterUpdate` workflow a single
update runs, started as a child under its own CLUSTER_UPDATE operation (opened by an activity
keyed by run and cluster, see `activities/update_runs.py`), so its approval-free run, events,
rollback on failure or cancel, and its place in the cluster's history are exactly a single
update's. The run's own approval (the organization's policy) is the base workflow's `decide`.

Everything that waits is durable: gates (an owner's approval through the `control` Update;
a `notBefore` instant or maintenance window through a timer), the soak after a stage, the
bounded wait for a busy cluster. Between stages the workflow continues as new, carrying only
its snapshot, so a 1,000-cluster run keeps a small history per stage.

Operators steer it through the `control` Update (pause, resume, skip a stage or group, approve a
gate), whose validator refuses what does not apply before anything enters the history. Pausing
stops new clusters from starting; the failure policy halts the run the same way when more
clusters of a stage fail than it tolerates; resume continues. Cancel cancels the running
children (each rolls back), leaves clusters already upgraded as they are, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, ChildWorkflowError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from clusterflow.contracts.operations import (
        ROLE_ORDER,
        EventInput,
        FinishInput,
        OperationOutcome,
        OperationStatus,
    )
    from clusterflow.contracts.update_runs import (
        BusyBehaviour,
        ChildState,
        ChildStatus,
        CloseChildren,
        ControlAction,
        Gate,
        GateKind,
        GateState,
        GateStatus,
        GateTiming,
        OpenChild,
        OpenedChild,
        OpenOutcome,
        PlannedGroup,
        PlannedStage,
        RunControl,
        RunControlResult,
        RunSnapshot,
        RunStatus,
        SaveSnapshot,
        UnitState,
        UnitStatus,
        UpdateRunInput,
        WindowOpening,
        group_key,
        stage_key,
    )
    from clusterflow.workflows.base import OperationWorkflow
    from clusterflow.workflows.steps import OperationSteps

OPEN_CHILD = "update_runs.open_child"
SAVE_SNAPSHOT = "update_runs.save_snapshot"
CLOSE_CHILDREN = "update_runs.close_children"
WINDOW_OPENING = "update_runs.window_opening"
CHILD_WORKFLOW = "ClusterUpdate"

# How often a busy cluster is asked again while the strategy says to wait for it.
BUSY_RETRY_SECONDS = 2.0
_DONE = (UnitStatus.SUCCEEDED, UnitStatus.COMPLETED_WITH_FAILURES, UnitStatus.SKIPPED, UnitStatus.CANCELLED)


@workflow.defn(name="UpdateRun")
class UpdateRunWorkflow(OperationWorkflow):
    @workflow.init
    def __init__(self, inp: UpdateRunInput) -> None:
        super().__init__()
        if inp.progress is None:  # a run continued as new was decided before
            self.expect_decision(inp.approval)
        self._inp: UpdateRunInput | None = None
        self._status = RunStatus.PENDING
        self._message = ""
        self._stage_index = 0
        self._units: dict[str, UnitState] = {}
        self._gates: dict[str, GateState] = {}
        self._notes: dict[str, ChildState] = {}
        self._acknowledged = 0
        self._controls = 0
        self._skip: set[str] = set()
        self._running: dict[str, int] = {}  # clusters running per group key
        self._handles: dict[str, workflow.ChildWorkflowHandle[object, OperationOutcome]] = {}
        self._opened: list[str] = []
        self._save_lock = asyncio.Lock()

    # --- entry ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: UpdateRunInput) -> OperationOutcome:
        self._inp = inp
        outcome: OperationOutcome = await self.guarded(lambda: self._run(inp), lambda: self._cancelled(inp))
        return outcome

    async def _run(self, inp: UpdateRunInput) -> OperationOutcome:
        steps = OperationSteps(inp.operation_id, inp.policy)
        plan = inp.plan
        if inp.progress is None:
            self._units = {stage_key(s.name): UnitState(stage_key(s.name)) for s in plan.stages}
            for stage in plan.stages:
                self._units |= {
                    group_key(stage.name, g.name): UnitState(group_key(stage.name, g.name)) for g in stage.groups
                }
            self._gates = {gate.id: GateState(gate.id) for _, _, gate in plan.gates()}
            self._notes = {
                s.cluster_id: ChildState(s.cluster_id, s.stage, s.group, ChildStatus.SKIPPED, reason=s.reason)
                for s in plan.skipped
            }
            ended = await self.begin(steps, inp.approval)
            if ended is not None:
                self._status = RunStatus.REJECTED if ended == OperationStatus.REJECTED else RunStatus(ended)
                await self._save("run/not-started", f"run ended {ended} before it started")
                return OperationOutcome(inp.operation_id, ended)
            self._status = RunStatus.RUNNING
            clusters = sum(s.size for s in plan.stages)
            await self._save("run/started", f"run started: {clusters} clusters in {len(plan.stages)} stages")
        else:
            self.steps = steps
            self._restore(inp.progress)
        while self._stage_index < len(plan.stages):
            await self._run_stage(plan.stages[self._stage_index])
            self._stage_index += 1
            if self._stage_index < len(plan.stages):
                # A small history per stage: the next stage starts in a new run of this workflow.
                await self._save()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(replace(inp, progress=self._snapshot()))
        return await self._finish(inp)

    async def _finish(self, inp: UpdateRunInput) -> OperationOutcome:
        stages = [self._units[stage_key(s.name)] for s in inp.plan.stages]
        succeeded = sum(u.succeeded for u in stages)
        failed = sum(u.failed for u in stages)
        skipped = sum(u.skipped for u in stages) + len(inp.plan.skipped)
        self._status = RunStatus.SUCCEEDED
        self._message = f"run finished: {succeeded} clusters updated, {failed} failed, {skipped} skipped"
        await self._save()  # the operation's own finish event says it
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.SUCCEEDED,
                message=self._message,
                metadata={"updated": succeeded, "failed": failed, "skipped": skipped},
            )
        )
        return OperationOutcome(inp.operation_id, OperationStatus.SUCCEEDED)

    # --- stages, groups, clusters --------------------------------------------------------------

    def _skipped(self, stage: str, group: str | None = None) -> bool:
        return stage_key(stage) in self._skip or (group is not None and group_key(stage, group) in self._skip)

    def _set_unit(self, key: str, status: UnitStatus) -> None:
        unit = self._units[key]
        now = workflow.now().isoformat()
        started = unit.started_at or (now if status != UnitStatus.PENDING else None)
        completed = now if status in _DONE else None
        self._units[key] = replace(unit, status=status, started_at=started, completed_at=completed)

    def _count(self, stage: str, group: str, field: str) -> None:
        for key in (stage_key(stage), group_key(stage, group)):
            unit = self._units[key]
            self._units[key] = replace(unit, **{field: getattr(unit, field) + 1})

    async def _run_stage(self, stage: PlannedStage) -> None:
        key = stage_key(stage.name)
        if self._units[key].status in _DONE:
            return
        self._set_unit(key, UnitStatus.RUNNING)
        self._acknowledged = 0
        await self._save(f"{key}/started", f"stage {stage.name} started")
        await self._pass_gates(stage.gates, GateTiming.BEFORE, stage.name, None)
        await asyncio.gather(*(self._run_group(stage, group) for group in stage.groups))
        # A halted or paused run goes no further until it is resumed (or cancelled).
        await workflow.wait_condition(lambda: self._status == RunStatus.RUNNING or self._skipped(stage.name))
        if stage.after_stage_wait_seconds and not self._skipped(stage.name):
            self._set_unit(key, UnitStatus.SOAKING)
            await self._save(f"{key}/soaking", f"stage {stage.name} soaking for {stage.after_stage_wait_seconds}s")
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._skipped(stage.name), timeout=timedelta(seconds=stage.after_stage_wait_seconds)
                )
        await self._pass_gates(stage.gates, GateTiming.AFTER, stage.name, None)
        unit = self._units[key]
        if self._skipped(stage.name):
            final = UnitStatus.SKIPPED
        else:
            final = UnitStatus.COMPLETED_WITH_FAILURES if unit.failed else UnitStatus.SUCCEEDED
        self._set_unit(key, final)
        await self._save(
            f"{key}/{final.lower()}",
            f"stage {stage.name} {final.lower().replace('_', ' ')}: {unit.succeeded} updated, {unit.failed} failed",
        )

    def _may_start(self, stage: PlannedStage, group: PlannedGroup) -> bool:
        if self._skipped(stage.name, group.name):
            return True
        running = self._running.get(group_key(stage.name, group.name), 0)
        return self._status == RunStatus.RUNNING and running < group.max_concurrency

    async def _run_group(self, stage: PlannedStage, group: PlannedGroup) -> None:
        key = group_key(stage.name, group.name)
        if self._skipped(stage.name, group.name):
            for cluster_id in group.cluster_ids:
                self._notes[cluster_id] = ChildState(
                    cluster_id, stage.name, group.name, ChildStatus.SKIPPED, reason="skipped by an operator"
                )
                self._count(stage.name, group.name, "skipped")
            self._set_unit(key, UnitStatus.SKIPPED)
            return
        self._set_unit(key, UnitStatus.RUNNING)
        await self._pass_gates(group.gates, GateTiming.BEFORE, stage.name, group.name)
        tasks: list[asyncio.Task[None]] = []
        try:
            for cluster_id in group.cluster_ids:
                await workflow.wait_condition(lambda: self._may_start(stage, group))
                if self._skipped(stage.name, group.name):
                    self._notes[cluster_id] = ChildState(
                        cluster_id, stage.name, group.name, ChildStatus.SKIPPED, reason="skipped by an operator"
                    )
                    self._count(stage.name, group.name, "skipped")
                    continue
                self._running[key] = self._running.get(key, 0) + 1
                tasks.append(asyncio.create_task(self._run_child(stage, group, cluster_id)))
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            # The run is cancelled while this group waits for a free slot: its running clusters'
            # tasks are not awaited here, so cancel them (each asks its update to roll back).
            for task in tasks:
                task.cancel()
            raise
        await self._pass_gates(group.gates, GateTiming.AFTER, stage.name, group.name)
        unit = self._units[key]
        if self._skipped(stage.name, group.name):
            final = UnitStatus.SKIPPED
        else:
            final = UnitStatus.COMPLETED_WITH_FAILURES if unit.failed else UnitStatus.SUCCEEDED
        self._set_unit(key, final)
        await self._save(f"{key}/{final.lower()}", f"group {stage.name}/{group.name} {final.lower().replace('_', ' ')}")

    async def _open(self, stage: PlannedStage, group: PlannedGroup, cluster_id: str) -> OpenedChild | None:
        """The cluster's operation, once it is free; None if it is skipped (busy or not updatable)."""
        assert self._inp is not None
        plan = self._inp.plan
        deadline = workflow.now() + timedelta(seconds=plan.busy_wait_seconds)
        while True:
            opened: OpenedChild = await workflow.execute_activity(
                OPEN_CHILD,
                OpenChild(self._inp.operation_id, cluster_id),
                result_type=OpenedChild,
                start_to_close_timeout=timedelta(seconds=self._inp.policy.record_timeout_seconds),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(seconds=10), non_retryable_error_types=["UNKNOWN_CHILD"]
                ),
            )
            if opened.outcome == OpenOutcome.OPENED:
                return opened
            busy = opened.outcome == OpenOutcome.BUSY
            waited_out = workflow.now() >= deadline or plan.busy == BusyBehaviour.SKIP
            if not busy or waited_out or self._skipped(stage.name, group.name):
                reason = f"busy: {opened.reason}" if busy else (opened.reason or "not updatable")
                self._notes[cluster_id] = ChildState(
                    cluster_id, stage.name, group.name, ChildStatus.SKIPPED, None, reason
                )
                self._count(stage.name, group.name, "skipped")
                await self._save(f"child/{cluster_id}/skipped", f"cluster {cluster_id} skipped: {reason}", "WARN")
                return None
            if cluster_id not in self._notes:
                self._notes[cluster_id] = ChildState(
                    cluster_id, stage.name, group.name, ChildStatus.WAITING_BUSY, None, opened.reason
                )
                await self._save(f"child/{cluster_id}/busy", f"cluster {cluster_id} is busy ({opened.reason}); waiting")
            remaining = (deadline - workflow.now()).total_seconds()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._skipped(stage.name, group.name),
                    timeout=timedelta(seconds=max(min(BUSY_RETRY_SECONDS, remaining), 0.001)),
                )

    async def _run_child(self, stage: PlannedStage, group: PlannedGroup, cluster_id: str) -> None:
        key = group_key(stage.name, group.name)
        try:
            opened = await self._open(stage, group, cluster_id)
            if opened is None:
                return
            self._notes.pop(cluster_id, None)
            assert opened.operation_id is not None and opened.update is not None
            self._opened.append(cluster_id)
            handle: workflow.ChildWorkflowHandle[object, OperationOutcome] = await workflow.start_child_workflow(
                CHILD_WORKFLOW,
                opened.update,
                id=opened.operation_id,
                result_type=OperationOutcome,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                # If the run is terminated, its clusters' updates stop the way a cancel stops them.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            )
            self._handles[cluster_id] = handle
            try:
                outcome = await handle
                status = outcome.status
            except ChildWorkflowError as err:
                status = OperationStatus.CANCELLED if is_cancelled_exception(err) else OperationStatus.FAILED
            self._handles.pop(cluster_id, None)
            if status == OperationStatus.SUCCEEDED:
                self._count(stage.name, group.name, "succeeded")
            elif status == OperationStatus.FAILED:
                self._count(stage.name, group.name, "failed")
            await self._event(
                f"child/{cluster_id}/{status.lower()}",
                f"cluster {cluster_id}: update {opened.operation_id} {status.lower()}",
                "ERROR" if status == OperationStatus.FAILED else "INFO",
            )
            if status == OperationStatus.FAILED:
                await self._apply_failure_policy(stage)
        finally:
            self._running[key] -= 1

    async def _apply_failure_policy(self, stage: PlannedStage) -> None:
        failed = self._units[stage_key(stage.name)].failed
        if self._status == RunStatus.HALTED or failed - self._acknowledged <= stage.failure_threshold:
            return
        self._status = RunStatus.HALTED
        self._message = (
            f"halted: {failed} clusters of stage {stage.name} failed (the failure policy tolerates "
            f"{stage.failure_threshold}); fix them, then resume or cancel the run"
        )
        await self._save(f"{stage_key(stage.name)}/halted/{failed}", self._message, "ERROR")

    # --- gates --------------------------------------------------------------------------------

    async def _pass_gates(self, gates: tuple[Gate, ...], timing: GateTiming, stage: str, group: str | None) -> None:
        key = stage_key(stage) if group is None else group_key(stage, group)
        where = f"{timing.lower()} {'stage ' + stage if group is None else 'group ' + stage + '/' + group}"
        for gate in gates:
            if gate.timing != timing or self._gates[gate.id].status in (GateStatus.APPROVED, GateStatus.PASSED):
                continue
            if self._skipped(stage, group):
                self._gates[gate.id] = replace(self._gates[gate.id], status=GateStatus.SKIPPED)
                continue
            self._set_unit(key, UnitStatus.WAITING)
            if gate.kind == GateKind.APPROVAL:
                self._gates[gate.id] = replace(self._gates[gate.id], status=GateStatus.WAITING)
                await self._save(f"gate/{gate.id}/waiting", f"gate {gate.id} ({where}) waits for an owner's approval")
                await workflow.wait_condition(functools.partial(self._approved_or_skipped, gate.id, stage, group))
            else:
                opens = await self._opening(gate)
                self._gates[gate.id] = replace(
                    self._gates[gate.id], status=GateStatus.WAITING, opens_at=opens.isoformat()
                )
                await self._save(f"gate/{gate.id}/waiting", f"gate {gate.id} ({where}) opens at {opens.isoformat()}")
                delay = (opens - workflow.now()).total_seconds()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(
                            lambda: self._skipped(stage, group), timeout=timedelta(seconds=delay)
                        )
                if self._gates[gate.id].status == GateStatus.WAITING:
                    self._gates[gate.id] = replace(self._gates[gate.id], status=GateStatus.PASSED)
            if self._skipped(stage, group):
                self._gates[gate.id] = replace(self._gates[gate.id], status=GateStatus.SKIPPED)
            self._set_unit(key, UnitStatus.RUNNING)
            await self._save(
                f"gate/{gate.id}/{self._gates[gate.id].status.lower()}",
                f"gate {gate.id} {self._gates[gate.id].status.lower()}",
            )

    def _approved_or_skipped(self, gate_id: str, stage: str, group: str | None) -> bool:
        return self._gates[gate_id].status == GateStatus.APPROVED or self._skipped(stage, group)

    async def _opening(self, gate: Gate) -> datetime:
        if gate.not_before is not None:
            return datetime.fromisoformat(gate.not_before)
        assert gate.window is not None and self._inp is not None
        opens: str = await workflow.execute_activity(
            WINDOW_OPENING,
            WindowOpening(gate.window, workflow.now().isoformat()),
            result_type=str,
            start_to_close_timeout=timedelta(seconds=self._inp.policy.record_timeout_seconds),
        )
        return datetime.fromisoformat(opens)

    # --- operator control ---------------------------------------------------------------------

    @workflow.update
    async def control(self, action: RunControl) -> RunControlResult:
        self._controls += 1
        number = self._controls
        if action.action == ControlAction.PAUSE:
            self._status = RunStatus.PAUSED
            self._message = f"paused by {action.actor}: running clusters finish, no new one starts"
        elif action.action == ControlAction.RESUME:
            if self._status == RunStatus.HALTED and self._inp is not None:
                stage = self._inp.plan.stages[self._stage_index]
                self._acknowledged = self._units[stage_key(stage.name)].failed
            self._status = RunStatus.RUNNING
            self._message = f"resumed by {action.actor}"
        elif action.action == ControlAction.SKIP:
            assert action.stage is not None
            target = stage_key(action.stage) if action.group is None else group_key(action.stage, action.group)
            self._skip.add(target)
            self._message = f"{target} skipped by {action.actor}: clusters not yet started there are skipped"
        else:
            assert action.gate_id is not None
            self._gates[action.gate_id] = replace(
                self._gates[action.gate_id], status=GateStatus.APPROVED, decided_by=action.actor
            )
            self._message = f"gate {action.gate_id} approved by {action.actor}" + (
                f": {action.comment}" if action.comment else ""
            )
        await self._save(f"control/{number}", self._message)
        return RunControlResult(self._status, self._message)

    @control.validator
    def _validate_control(self, action: RunControl) -> None:
        inp = self._inp
        if inp is None or self._status not in (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.HALTED):
            raise ApplicationError(f"the run is {self._status}, not running", type="RUN_NOT_ACTIVE")
        if self.cancel_requested():
            raise ApplicationError("the run is being cancelled", type="RUN_NOT_ACTIVE")
        if action.action == ControlAction.PAUSE and self._status != RunStatus.RUNNING:
            raise ApplicationError(f"the run is {self._status}; only a running run pauses", type="RUN_NOT_RUNNING")
        if action.action == ControlAction.RESUME and self._status == RunStatus.RUNNING:
            raise ApplicationError("the run is running; nothing to resume", type="RUN_NOT_PAUSED")
        if action.action == ControlAction.SKIP:
            stages = {s.name: s for s in inp.plan.stages}
            if action.stage not in stages:
                raise ApplicationError(f"the run has no stage {action.stage!r}", type="UNKNOWN_STAGE")
            if action.group is not None and action.group not in {g.name for g in stages[action.stage].groups}:
                raise ApplicationError(f"stage {action.stage} has no group {action.group!r}", type="UNKNOWN_GROUP")
            key = stage_key(action.stage) if action.group is None else group_key(action.stage, action.group)
            if self._units[key].status in _DONE or key in self._skip:
                raise ApplicationError(f"{key} is already {self._units[key].status}", type="ALREADY_FINISHED")
        if action.action == ControlAction.APPROVE_GATE:
            if ROLE_ORDER.index(action.actor_role) < ROLE_ORDER.index("owner"):
                raise ApplicationError("approving a gate needs the owner role", type="APPROVAL_ROLE_TOO_LOW")
            gates = {gate.id: gate for _, _, gate in inp.plan.gates()}
            gate = gates.get(action.gate_id or "")
            if gate is None or gate.kind != GateKind.APPROVAL:
                raise ApplicationError(f"the run has no approval gate {action.gate_id!r}", type="UNKNOWN_GATE")
            if self._gates[gate.id].status not in (GateStatus.PENDING, GateStatus.WAITING):
                raise ApplicationError(
                    f"gate {gate.id} is already {self._gates[gate.id].status}", type="GATE_NOT_WAITING"
                )

    @staticmethod
    def cancel_requested() -> bool:
        return workflow.cancellation_reason() is not None

    # --- cancel -------------------------------------------------------------------------------

    async def _cancelled(self, inp: UpdateRunInput) -> None:
        if self.steps is None:
            self.steps = OperationSteps(inp.operation_id, inp.policy)
        # Cancelling the run cancelled the awaits on its children, which asked each running
        # update to cancel; each rolls back. Wait until they have ended.
        for handle in list(self._handles.values()):
            with contextlib.suppress(BaseException):  # cancelled or failed: ended either way
                await handle
        if self._opened:
            await workflow.execute_activity(
                CLOSE_CHILDREN,
                CloseChildren(inp.operation_id, tuple(self._opened), "the update run was cancelled before it began"),
                start_to_close_timeout=timedelta(seconds=inp.policy.record_timeout_seconds),
            )
        stages = [self._units[stage_key(s.name)] for s in inp.plan.stages if stage_key(s.name) in self._units]
        updated = sum(u.succeeded for u in stages)
        for key, unit in list(self._units.items()):
            if unit.status not in _DONE:
                self._set_unit(key, UnitStatus.CANCELLED)
        self._status = RunStatus.CANCELLED
        self._message = (
            f"run cancelled: running cluster updates were cancelled and rolled back; "
            f"{updated} clusters already updated stay updated"
        )
        await self._save()
        await self.finish(
            FinishInput(
                operation_id=inp.operation_id,
                status=OperationStatus.CANCELLED,
                message=self._message,
                metadata={"updated": updated, "leftBehind": [f"{updated} clusters already updated stay updated"]},
            )
        )

    # --- state --------------------------------------------------------------------------------

    def _snapshot(self) -> RunSnapshot:
        return RunSnapshot(
            status=self._status,
            stage_index=self._stage_index,
            message=self._message,
            units=tuple(self._units.values()),
            gates=tuple(self._gates.values()),
            children=tuple(self._notes.values()),
            acknowledged_failures=self._acknowledged,
            controls=self._controls,
            skip_requested=tuple(sorted(self._skip)),
        )

    def _progress(self) -> int:
        """Clusters finished (updated, failed or skipped) of those planned, as a percentage."""
        assert self._inp is not None
        stages = [self._units[stage_key(s.name)] for s in self._inp.plan.stages if stage_key(s.name) in self._units]
        total = sum(s.size for s in self._inp.plan.stages)
        done = sum(u.succeeded + u.failed + u.skipped for u in stages)
        return min(99, (done * 100) // total) if total else 0

    def _restore(self, snapshot: RunSnapshot) -> None:
        self._status = snapshot.status
        self._stage_index = snapshot.stage_index
        self._message = snapshot.message
        self._units = {u.key: u for u in snapshot.units}
        self._gates = {g.id: g for g in snapshot.gates}
        self._notes = {c.cluster_id: c for c in snapshot.children}
        self._acknowledged = snapshot.acknowledged_failures
        self._controls = snapshot.controls
        self._skip = set(snapshot.skip_requested)

    async def _save(self, event_key: str | None = None, message: str | None = None, level: str = "INFO") -> None:
        """Write the snapshot (and an event on the run's operation). Serialized, and the snapshot
        is taken inside the lock, so the last write is always the newest state."""
        assert self._inp is not None
        async with self._save_lock:
            await workflow.execute_activity(
                SAVE_SNAPSHOT,
                SaveSnapshot(self._inp.operation_id, self._snapshot(), event_key, message, level, self._progress()),
                start_to_close_timeout=timedelta(seconds=self._inp.policy.record_timeout_seconds),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
            )

    async def _event(self, event_key: str, message: str, level: str = "INFO") -> None:
        """An event on the run's operation without a snapshot: a cluster starting or ending changes
        no stage, group or gate (the record reads clusters from their own operations), and a run
        of 1,000 clusters should not carry 2,000 snapshots in its history."""
        assert self._inp is not None and self.steps is not None
        await self.steps.event(
            EventInput(self._inp.operation_id, event_key, message, level=level, progress_percentage=self._progress())
        )
