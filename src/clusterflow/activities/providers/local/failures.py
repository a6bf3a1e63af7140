"""Failure injection of the simulated cloud, so retries and permanent errors can be shown.

The deploy document's `provisioner.local` block controls it (`failAt`: a phase; `failTimes`:
attempts that fail there before one succeeds; absent means every attempt fails, a permanent
error); an update's `local` block does the same for update phases. Both arrive as the typed
`Simulation`. Kept apart from the simulation so the one rule of when a phase fails reads in one
place.
"""

from __future__ import annotations

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.contracts.cluster import Simulation
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput


def maybe_fail(inp: PhaseInput, attempt: int, simulation: Simulation | None) -> None:
    if simulation is None or simulation.fail_at != inp.phase:
        return
    if simulation.fail_times is None:
        raise ProviderError(
            ErrorCode.SIMULATED_FAILURE,
            f"simulated permanent failure injected at {inp.phase} (provisioner.local.failAt)",
            retryable=False,
        )
    if attempt <= simulation.fail_times:
        raise ProviderError(
            ErrorCode.SIMULATED_FAILURE,
            f"simulated transient failure {attempt} of {simulation.fail_times} at {inp.phase}",
            retryable=True,
        )
