"""A provider's phase activity: its name, what it receives and what it answers.

Frozen: a workflow builds a new input for every phase and pass (a rollback pass is another
input with `stage="rollback"`), so nothing a provider receives is changed behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from clusterflow.contracts.changes import UpdateChange
from clusterflow.contracts.cluster import ClusterDefinition


class PhaseAction(StrEnum):
    """What a phase activity does; with the provider it names the activity (`aws.update_phase`)."""

    DEPLOY = "deploy"
    UPDATE = "update"
    DELETE = "delete"


def phase_activity_name(provider: str, action: PhaseAction | str) -> str:
    """The activity that runs one provider's phases, e.g. `gcp.update_phase`.

    The one place the name is made: the worker registers each provider's activities under it
    and the workflows call them through it.
    """
    return f"{provider}.{PhaseAction(action).value}_phase"


@dataclass(frozen=True)
class PhaseInput:
    """What every provider phase activity receives: the cluster, the phase and, for an update,
    the change (or its inverse in a rollback pass)."""

    operation_id: str
    cluster_id: str
    cluster_name: str
    provider: str
    region: str
    phase: str
    spec: dict[str, Any]  # the deploy document's spec as JSON; providers read `cluster` instead
    progress_from: int
    progress_to: int
    # What an update phase changes (or, in a rollback pass, restores); empty for deploy and
    # delete phases, which build from `cluster`.
    change: UpdateChange = field(default_factory=UpdateChange)
    # "" for the operation's own work; "cleanup" or "rollback" when a phase runs again to undo
    # work, so its events are new facts rather than repeats of the first pass.
    stage: str = ""
    definition: ClusterDefinition | None = None

    @property
    def cluster(self) -> ClusterDefinition:
        """The cluster the phase works on, typed (built from `spec` for inputs that predate it)."""
        return self.definition or ClusterDefinition.from_spec(self.spec)


@dataclass(frozen=True)
class PhaseResult:
    phase: str
    resources: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # The control plane's version as the cloud reports it when the phase ended (update phases
    # that touch the control plane set it, also in a rollback pass), so the record tells the truth.
    kubernetes_version: str | None = None
