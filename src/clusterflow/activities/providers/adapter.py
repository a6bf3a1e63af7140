"""One adapter from a provider to its Temporal activities: `<cloud>.deploy_phase`, `.update_phase`
and `.delete_phase`.

A provider is written as three coroutines, one per operation kind, each running one phase of
that operation for a `PhaseInput` and reporting through a `PhaseReporter`. What every phase
activity does around that body (started/completed events, error classification, retries made
visible: `phases.run_phase`) lives here once, so no provider repeats the dispatch and a new
provider is registered by `phase_activities(cloud, pool, provider)` alone. The activity names
stay `<cloud>.<kind>_phase`, made by `contracts.phase_activity.phase_activity_name`, the function the
workflows call them through (`OperationSteps.run_phase`), so the two cannot drift apart.

`prepare` runs before the phase body, outside `run_phase`: the providers that resolve their
credentials there (GKE, AKS: which connected account the cluster's phases act as) get the
result passed to every body as `bound`. Providers with nothing to resolve subclass
`Unprepared`, whose `prepare` returns None.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol, TypeVar

from temporalio import activity

from clusterflow.activities.providers.phases import PhaseReporter, run_phase
from clusterflow.contracts.phase_activity import PhaseAction, PhaseInput, PhaseResult, phase_activity_name
from clusterflow.records.db import DbPool

Bound = TypeVar("Bound")

PhaseActivity = Callable[[PhaseInput], Awaitable[PhaseResult]]
PhaseMethod = Callable[[PhaseInput, PhaseReporter, Bound], Awaitable[PhaseResult]]


class Provider(Protocol[Bound]):
    """What a provider implements: one coroutine per operation kind, for one phase at a time."""

    async def prepare(self, inp: PhaseInput) -> Bound:
        """Resolve what the phase body needs before its events start (credentials, clients)."""
        ...

    async def deploy(self, inp: PhaseInput, reporter: PhaseReporter, bound: Bound) -> PhaseResult: ...

    async def update(self, inp: PhaseInput, reporter: PhaseReporter, bound: Bound) -> PhaseResult: ...

    async def delete(self, inp: PhaseInput, reporter: PhaseReporter, bound: Bound) -> PhaseResult: ...


class Unprepared:
    """For providers that resolve nothing before the phase body (they do it inside, if at all)."""

    async def prepare(self, inp: PhaseInput) -> None:
        return None


class PhaseActivities(NamedTuple):
    """A provider's three registered activities; iterate it to register them with a worker."""

    deploy_phase: PhaseActivity
    update_phase: PhaseActivity
    delete_phase: PhaseActivity


def phase_activity(
    name: str, pool: DbPool, prepare: Callable[[PhaseInput], Awaitable[Bound]], method: PhaseMethod[Bound]
) -> PhaseActivity:
    """The activity `name`: prepare, then run `method` as the phase body under `run_phase`."""

    async def run(inp: PhaseInput) -> PhaseResult:
        bound = await prepare(inp)

        async def body(reporter: PhaseReporter) -> PhaseResult:
            return await method(inp, reporter, bound)

        return await run_phase(pool, inp, body)

    run.__name__ = run.__qualname__ = name.replace(".", "_")
    return activity.defn(name=name)(run)


def phase_activities(cloud: str, pool: DbPool, provider: Provider[Bound]) -> PhaseActivities:
    """`<cloud>.deploy_phase`, `<cloud>.update_phase` and `<cloud>.delete_phase` of `provider`."""

    def named(action: PhaseAction) -> str:
        return phase_activity_name(cloud, action)

    return PhaseActivities(
        deploy_phase=phase_activity(named(PhaseAction.DEPLOY), pool, provider.prepare, provider.deploy),
        update_phase=phase_activity(named(PhaseAction.UPDATE), pool, provider.prepare, provider.update),
        delete_phase=phase_activity(named(PhaseAction.DELETE), pool, provider.prepare, provider.delete),
    )
