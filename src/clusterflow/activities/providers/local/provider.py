"""The local provider's phases: create, wait for, update and delete simulated resources.

It reads what a cloud provider reads: the typed `ClusterDefinition` for deploy and delete, and
the planner's typed `UpdateChange` for update phases, so what the simulator shows is what a
cloud would be asked to do. It also behaves as a cloud does where that matters to a user: an
update's rollback restores node groups and tags but never moves the control plane back (the
planner's inverse carries no version), and the control plane reports its live version.

Every wait goes through `waits.wait`, which notices a cancel within about a second (the SDK's
throttled heartbeats alone would only tell it after the phase ended).

Failures are injected before the phase body: always on deploy, and on update and delete only
in the main pass (`inp.stage` empty), so a cleanup or rollback pass is never failed on purpose.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.adapter import Unprepared
from clusterflow.activities.providers.local.failures import maybe_fail
from clusterflow.activities.providers.local.spec import (
    ADDONS,
    CONTROL_PLANE,
    KINDS_BY_PHASE,
    check_machine_types,
    deploy_version,
    invalid,
    resources_for,
)
from clusterflow.activities.providers.local.waits import wait
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog.local import KUBERNETES_VERSIONS
from clusterflow.catalog.spec_checks import check_deploy_spec
from clusterflow.contracts.changes import ChangeKind, NodeGroupChange
from clusterflow.contracts.cluster import Simulation
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import ClusterFacts, PhaseInput, PhaseResult
from clusterflow.contracts.phases import Phase
from clusterflow.records import local_cloud
from clusterflow.records.catalog import current_catalog
from clusterflow.records.db import DbPool


class LocalProvider(Unprepared):
    def __init__(self, pool: DbPool, default_phase_seconds: float) -> None:
        self.pool = pool
        self.default_phase_seconds = default_phase_seconds

    async def deploy(self, inp: PhaseInput, reporter: PhaseReporter, bound: None) -> PhaseResult:
        maybe_fail(inp, reporter.attempt, self._simulation(inp))
        return await self._deploy(inp, reporter)

    async def delete(self, inp: PhaseInput, reporter: PhaseReporter, bound: None) -> PhaseResult:
        if not inp.stage:
            maybe_fail(inp, reporter.attempt, self._simulation(inp))
        return await self._delete(inp, reporter)

    async def update(self, inp: PhaseInput, reporter: PhaseReporter, bound: None) -> PhaseResult:
        if not inp.stage:
            maybe_fail(inp, reporter.attempt, inp.change.simulation)
        return await self._update(inp, reporter)

    @staticmethod
    def _simulation(inp: PhaseInput) -> Simulation | None:
        local = inp.cluster.local
        return local.simulation if local is not None else None

    def _phase_seconds(self, inp: PhaseInput, override: Simulation | None = None) -> float:
        for simulation in (override, self._simulation(inp)):
            if simulation is not None and simulation.phase_seconds is not None:
                return simulation.phase_seconds
        return self.default_phase_seconds

    async def _deploy(self, inp: PhaseInput, reporter: PhaseReporter) -> PhaseResult:
        seconds = self._phase_seconds(inp)
        version = deploy_version(inp.cluster)
        if inp.phase == Phase.VALIDATE:
            problems = check_deploy_spec(inp.spec, await current_catalog(self.pool))
            if problems:
                raise invalid(problems)
            await wait(reporter, seconds / 2, "checking quotas")
            await reporter.event("quotas", "quotas and machine types available", fraction=0.5)
            await wait(reporter, seconds / 2, "validated")
            return PhaseResult(inp.phase)
        wanted = resources_for(inp)
        if inp.phase == Phase.VERIFY:
            return await self._verify(inp, reporter, seconds, version)
        share = seconds / max(len(wanted), 1)
        for index, (kind, name, spec) in enumerate(wanted):
            created = await local_cloud.create_resource(
                self.pool, inp.cluster_id, kind, name, inp.operation_id, share, spec
            )
            await self._wait_ready(inp, reporter, kind, name)
            verb = "created" if created else "found existing"
            await reporter.event(f"{kind}/{name}", f"{verb} {kind} {name}", fraction=(index + 1) / len(wanted))
        return PhaseResult(inp.phase, resources=[f"{kind}/{name}" for kind, name, _ in wanted])

    async def _wait_ready(self, inp: PhaseInput, reporter: PhaseReporter, kind: str, name: str) -> None:
        while True:
            resource = await local_cloud.describe(self.pool, inp.cluster_id, kind, name)
            if resource is None or resource.state == "DELETED":
                raise ProviderError(
                    ErrorCode.PHASE_FAILED, f"{kind} {name} disappeared while being created", retryable=True
                )
            if resource.state == "READY":
                return
            await wait(reporter, min(float(resource.seconds_left), 0.5), f"waiting for {kind} {name}")

    async def _verify(self, inp: PhaseInput, reporter: PhaseReporter, seconds: float, version: str) -> PhaseResult:
        resources = await local_cloud.list_resources(self.pool, inp.cluster_id)
        kinds = {r.kind for r in resources if r.deleted_at is None}
        missing = {"network", "control_plane"} - kinds
        if missing:
            raise ProviderError(
                ErrorCode.PHASE_FAILED, f"cluster is missing {', '.join(sorted(missing))}", retryable=True
            )
        await wait(reporter, seconds, "checking cluster health")
        await reporter.event("healthy", f"{len(resources)} resources healthy", fraction=1.0)
        return PhaseResult(
            inp.phase,
            facts=ClusterFacts(
                kubernetes_version=version,
                endpoint=f"https://{inp.cluster_name}.{inp.region}.local.clusterflow.invalid",
            ),
        )

    async def _delete(self, inp: PhaseInput, reporter: PhaseReporter) -> PhaseResult:
        kinds = KINDS_BY_PHASE.get(inp.phase, ())
        live = await local_cloud.list_resources(self.pool, inp.cluster_id, live_only=True)
        doomed = sorted((r for r in live if r.kind in kinds), key=lambda r: (kinds.index(r.kind), r.name))
        share = self._phase_seconds(inp) / max(len(doomed), 1)
        deleted = []
        for index, resource in enumerate(doomed):
            kind, name = resource.kind, resource.name
            await local_cloud.delete_resource(self.pool, inp.cluster_id, kind, name, inp.operation_id)
            await wait(reporter, share, f"deleting {kind} {name}")
            deleted.append(f"{kind}/{name}")
            await reporter.event(f"{kind}/{name}/deleted", f"deleted {kind} {name}", fraction=(index + 1) / len(doomed))
        return PhaseResult(inp.phase, resources=deleted)

    async def _update(self, inp: PhaseInput, reporter: PhaseReporter) -> PhaseResult:
        change = inp.change
        seconds = self._phase_seconds(inp, change.simulation)
        version = change.target_version
        if inp.phase == Phase.VALIDATE:
            if version and version not in KUBERNETES_VERSIONS:
                raise ProviderError(
                    ErrorCode.INVALID_SPEC, f"kubernetesVersion {version} is not offered", retryable=False
                )
            for added in change.of_kind(ChangeKind.ADD):
                check_machine_types(added.new_group)
            await wait(reporter, seconds, "preflight checks")
            return PhaseResult(inp.phase)
        if inp.phase == Phase.CONTROL_PLANE:
            if version:
                await local_cloud.update_resource(
                    self.pool, inp.cluster_id, *CONTROL_PLANE, inp.operation_id, {"kubernetesVersion": version}
                )
                await wait(reporter, seconds, f"upgrading control plane to {version}")
            live = await local_cloud.describe(self.pool, inp.cluster_id, *CONTROL_PLANE)
            running = (live.spec or {}).get("kubernetesVersion") if live is not None else None
            await reporter.event(
                "control-plane", f"control plane runs {running or 'an unrecorded version'}", fraction=1
            )
            return PhaseResult(
                inp.phase, resources=["control_plane/control-plane"], facts=ClusterFacts(kubernetes_version=running)
            )
        if inp.phase == Phase.NODE_GROUPS:
            return await self._update_node_groups(inp, reporter, seconds)
        if inp.phase == Phase.ADDONS and version:
            for index, name in enumerate(ADDONS):
                await local_cloud.update_resource(
                    self.pool, inp.cluster_id, "addon", name, inp.operation_id, {"kubernetesVersion": version}
                )
                await wait(reporter, seconds / len(ADDONS), f"updating {name}")
                await reporter.event(f"addon/{name}", f"addon {name} matches {version}", fraction=(index + 1) / 3)
            return PhaseResult(inp.phase)
        if inp.phase == Phase.VERIFY:
            await wait(reporter, seconds, "checking cluster health")
            await reporter.event("healthy", "cluster healthy after update", fraction=1.0)
        return PhaseResult(inp.phase)

    async def _update_node_groups(self, inp: PhaseInput, reporter: PhaseReporter, seconds: float) -> PhaseResult:
        changes = inp.change.node_groups
        share = seconds / max(len(changes), 1)
        touched = []
        for index, change in enumerate(changes):
            await self._apply(inp, reporter, change, share)
            touched.append(f"node_group/{change.name}")
            await reporter.event(
                f"node_group/{change.name}/{change.kind.lower()}",
                f"{change.describe()} done",
                fraction=(index + 1) / len(changes),
            )
        return PhaseResult(inp.phase, resources=touched)

    async def _apply(self, inp: PhaseInput, reporter: PhaseReporter, change: NodeGroupChange, share: float) -> None:
        name = change.name
        if change.kind == ChangeKind.ADD:
            await local_cloud.create_resource(
                self.pool, inp.cluster_id, "node_group", name, inp.operation_id, share, change.new_group.to_document()
            )
            await self._wait_ready(inp, reporter, "node_group", name)
            return
        if change.kind == ChangeKind.REMOVE:
            await local_cloud.delete_resource(self.pool, inp.cluster_id, "node_group", name, inp.operation_id)
            await wait(reporter, share, f"draining and removing {name}")
            return
        spec: dict[str, Any] = (
            {"minNode": change.new_size.min_nodes, "maxNode": change.new_size.max_nodes}
            if change.kind == ChangeKind.RESIZE
            else {"kubernetesVersion": change.target_version}
        )
        if await local_cloud.describe(self.pool, inp.cluster_id, "node_group", name) is None:
            raise ProviderError(ErrorCode.INVALID_SPEC, f"node group {name} does not exist", retryable=False)
        await local_cloud.update_resource(self.pool, inp.cluster_id, "node_group", name, inp.operation_id, spec)
        await wait(reporter, share, change.describe())
