"""The phases of a managed Kubernetes service that builds the whole cluster itself (GKE, AKS).

Both services create networking, add-ons and node pools with the cluster and delete them with
it, and both mark the clusters they manage for us (GKE's label, AKS's tag). So their phases are
the same sequence, written once here (`ManagedClusterProvider`); each cloud's provider supplies
the steps that differ as hooks (how to open its session, create, verify and update).

Teardown is one rule (`delete_owned_cluster`): only CONTROL_PLANE has anything to do; a missing
cluster is success; a same-named cluster without our owner mark is someone else's and is left
untouched (a warning, not a failure); a cluster that vanishes while being deleted is deleted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult
from clusterflow.contracts.phases import Phase

Bound = TypeVar("Bound")  # what the provider's `prepare` resolved
Session = TypeVar("Session")  # the cloud's per-phase session (calls, waiting)
Cluster = TypeVar("Cluster")  # the cloud's cluster model


@dataclass(frozen=True)
class OwnedCluster:
    """A described cluster: the owner mark it carries, and how to delete and name it."""

    owner: str | None
    delete: Callable[[], Awaitable[object]]
    resource: str


async def delete_owned_cluster(
    inp: PhaseInput,
    reporter: PhaseReporter,
    service: str,
    owner: str,
    describe: Callable[[], Awaitable[OwnedCluster | None]],
) -> PhaseResult:
    """The delete phase of a `service` ("GKE", "AKS") cluster whose owner mark must be `owner`."""
    if inp.phase != Phase.CONTROL_PLANE:
        await reporter.event("nothing", f"{inp.phase}: nothing of its own on {service}", fraction=1.0)
        return PhaseResult(inp.phase)
    cluster = await describe()
    if cluster is None:
        await reporter.event("absent", f"{service} cluster {inp.cluster_name} does not exist", fraction=1.0)
        return PhaseResult(inp.phase)
    if cluster.owner != owner:
        await reporter.event(
            "foreign",
            f"{service} cluster {inp.cluster_name} is not managed by cluster {inp.cluster_id}; left untouched",
            level="WARN",
            fraction=1.0,
        )
        return PhaseResult(inp.phase)
    try:
        await cluster.delete()
    except ProviderError as err:
        if err.code != ErrorCode.CLOUD_NOT_FOUND:
            raise
    await reporter.event("deleted", f"deleted {service} cluster {inp.cluster_name}", fraction=1.0)
    return PhaseResult(inp.phase, resources=[cluster.resource])


@dataclass(frozen=True)
class ManagedSteps(Generic[Session, Cluster]):
    """The cloud's steps the deploy and delete phases run, as its own functions."""

    describe: Callable[[Session], Awaitable[Cluster | None]]
    check_owner: Callable[[Cluster, PhaseInput], None]  # refuses (CLOUD_CONFLICT) a cluster that is not ours
    create_cluster: Callable[[PhaseInput, Session, PhaseReporter], Awaitable[PhaseResult]]
    create_node_groups: Callable[[PhaseInput, Session, PhaseReporter], Awaitable[PhaseResult]]
    verify: Callable[[PhaseInput, Session], Awaitable[PhaseResult]]
    owned_cluster: Callable[[Session], Awaitable[OwnedCluster | None]]


class ManagedClusterProvider(ABC, Generic[Bound, Session, Cluster]):
    """`adapter.Provider`'s deploy, update and delete for a managed service; hooks per cloud."""

    service: ClassVar[str]  # how events name the service: "GKE", "AKS"
    missing_code: ClassVar[str]  # the error an update of a cluster that does not exist fails with
    managed_addons: ClassVar[str]  # deploy's ADDONS event: what the service installs itself
    update_allowed: ClassVar[str]  # update VALIDATE's event: what the change was checked against
    steps: ManagedSteps[Session, Cluster]

    @abstractmethod
    def _session(self, inp: PhaseInput, reporter: PhaseReporter, bound: Bound) -> Session:
        """The phase's session, in the cloud's account and location."""

    @abstractmethod
    async def _checked_session(self, inp: PhaseInput, reporter: PhaseReporter, bound: Bound) -> Session:
        """Deploy VALIDATE: the spec checked against the catalog, and the session, in the cloud's order."""

    @abstractmethod
    def _network(self, inp: PhaseInput) -> str:
        """Deploy NETWORK's event: which network the service builds or uses."""

    @abstractmethod
    async def _validate_change(self, inp: PhaseInput, session: Session, cluster: Cluster) -> None: ...

    @abstractmethod
    async def _update_control_plane(
        self, inp: PhaseInput, session: Session, cluster: Cluster, reporter: PhaseReporter
    ) -> PhaseResult: ...

    @abstractmethod
    async def _update_node_groups(
        self, inp: PhaseInput, session: Session, cluster: Cluster, reporter: PhaseReporter
    ) -> PhaseResult: ...

    @abstractmethod
    def _owner(self, inp: PhaseInput) -> str:
        """The owner mark this cluster's cloud cluster carries."""

    async def deploy(self, inp: PhaseInput, reporter: PhaseReporter, bound: Bound) -> PhaseResult:
        if inp.phase == Phase.VALIDATE:
            session = await self._checked_session(inp, reporter, bound)
            existing = await self.steps.describe(session)  # proves credentials and permission now
            if existing is not None:
                self.steps.check_owner(existing, inp)
            return PhaseResult(inp.phase)
        session = self._session(inp, reporter, bound)
        if inp.phase == Phase.NETWORK:
            await reporter.event("network", self._network(inp), fraction=1.0)
            return PhaseResult(inp.phase)
        if inp.phase == Phase.CONTROL_PLANE:
            return await self.steps.create_cluster(inp, session, reporter)
        if inp.phase == Phase.NODE_GROUPS:
            return await self.steps.create_node_groups(inp, session, reporter)
        if inp.phase == Phase.ADDONS:
            await reporter.event("addons", self.managed_addons, fraction=1.0)
            return PhaseResult(inp.phase)
        return await self.steps.verify(inp, session)

    async def update(self, inp: PhaseInput, reporter: PhaseReporter, bound: Bound) -> PhaseResult:
        session = self._session(inp, reporter, bound)
        cluster = await self.steps.describe(session)
        if cluster is None:
            raise ProviderError(
                self.missing_code, f"{self.service} cluster {inp.cluster_name} does not exist", retryable=False
            )
        if inp.phase == Phase.VALIDATE:
            self.steps.check_owner(cluster, inp)
            await self._validate_change(inp, session, cluster)
            await reporter.event("plan", self.update_allowed, fraction=1.0)
            return PhaseResult(inp.phase)
        if inp.phase == Phase.CONTROL_PLANE:
            return await self._update_control_plane(inp, session, cluster, reporter)
        if inp.phase == Phase.NODE_GROUPS:
            return await self._update_node_groups(inp, session, cluster, reporter)
        if inp.phase == Phase.ADDONS:
            upgraded = f"{self.service} upgrades its managed add-ons with the cluster"
            await reporter.event("addons", upgraded, fraction=1.0)
            return PhaseResult(inp.phase)
        return await self.steps.verify(inp, session)

    async def delete(self, inp: PhaseInput, reporter: PhaseReporter, bound: Bound) -> PhaseResult:
        def describe() -> Awaitable[OwnedCluster | None]:
            return self.steps.owned_cluster(self._session(inp, reporter, bound))

        return await delete_owned_cluster(inp, reporter, self.service, self._owner(inp), describe)
