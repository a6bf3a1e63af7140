"""Failure injection of the simulated cloud, so retries and permanent errors can be shown.

The spec's `provisioner.local` block controls it: `failAt` (a phase) and `failTimes` (attempts
that fail there before one succeeds; absent means every attempt fails, a permanent error). An
update's `spec.local` block does the same for update phases. Kept apart from the simulation so
the one rule of when a phase fails reads in one place.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.local.spec import local_block
from clusterflow.activities.providers.phases import ProviderError
from clusterflow.workflows.contracts import ErrorCode, PhaseInput


def maybe_fail(inp: PhaseInput, attempt: int, block: dict[str, Any] | None = None) -> None:
    block = local_block(inp.spec) if block is None else block
    if block.get("failAt") != inp.phase:
        return
    fail_times = block.get("failTimes")
    if fail_times is None:
        raise ProviderError(
            ErrorCode.SIMULATED_FAILURE,
            f"simulated permanent failure injected at {inp.phase} (provisioner.local.failAt)",
            retryable=False,
        )
    if attempt <= int(fail_times):
        raise ProviderError(
            ErrorCode.SIMULATED_FAILURE,
            f"simulated transient failure {attempt} of {fail_times} at {inp.phase}",
            retryable=True,
        )
