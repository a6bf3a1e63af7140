"""A provider's phase activity: its name, what it receives and what it answers.

Frozen: a workflow builds a new input for every phase and pass (a rollback pass is another
input with `stage="rollback"`), so nothing a provider receives is changed behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
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
    # Set by the workflow, which counts a phase's runs itself (0 in inputs that predate it: the
    # activity then reads Temporal's attempt): the cloud attempt (runs lost to our
    # infrastructure do not count), its budget, the run (unique, for event keys) and whether
    # the run before was lost rather than failed, so the phase is re-checked, not retried.
    attempt: int = 0
    max_attempts: int = 0
    run: int = 0
    recheck: bool = False
    recheck_reason: str = ""  # what lost the run before ("" for a worker restart)

    @property
    def cluster(self) -> ClusterDefinition:
        """The cluster the phase works on, typed (built from `spec` for inputs that predate it)."""
        return self.definition or ClusterDefinition.from_spec(self.spec)


@dataclass(frozen=True)
class NetworkFacts:
    vpc_id: str
    subnet_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterFacts:
    """What the cloud reports about the cluster when a phase ends.

    The deploy workflow merges every phase's facts (later phases win), writes the version and
    tags to the cluster record and the rest to the operation's `result`; the update workflow
    records the control plane's version from them, so the record says what the cloud holds.
    """

    kubernetes_version: str | None = None  # minor ("1.32"), as the record stores versions
    patch_version: str | None = None  # as the cloud reports it ("1.32.4")
    endpoint: str | None = None
    cloud_resource_id: str | None = None  # EKS ARN, GKE self link, AKS resource ID
    account_id: str | None = None  # the cloud account the cluster lives in
    tags: Mapping[str, str] | None = None  # the cluster's user tags as the cloud holds them
    network: NetworkFacts | None = None

    def merged(self, later: ClusterFacts | None) -> ClusterFacts:
        if later is None:
            return self
        values = {f.name: getattr(later, f.name) for f in fields(later) if getattr(later, f.name) is not None}
        return replace(self, **values)

    def record_fields(self) -> dict[str, Any]:
        """The cluster record's columns these facts settle."""
        settled: dict[str, Any] = {}
        if self.kubernetes_version is not None:
            settled["kubernetesVersion"] = self.kubernetes_version
        if self.tags is not None:
            settled["tags"] = dict(self.tags)
        return settled

    def result_document(self) -> dict[str, Any]:
        """The operation's `result`, in the API's camelCase."""
        cluster = {
            "kubernetesVersion": self.kubernetes_version,
            "currentKubernetesVersion": self.patch_version,
            "endpoint": self.endpoint,
            "cloudResourceId": self.cloud_resource_id,
            "accountId": self.account_id,
        }
        document: dict[str, Any] = {"cluster": {k: v for k, v in cluster.items() if v is not None}}
        if self.network is not None:
            document["network"] = {"vpcId": self.network.vpc_id, "subnetIds": list(self.network.subnet_ids)}
        return document


@dataclass(frozen=True)
class PhaseResult:
    phase: str
    resources: list[str] = field(default_factory=list)
    # What the cloud reports once the phase ended (deploy VERIFY, update CONTROL_PLANE also in
    # a rollback pass), so the record tells the truth rather than what was asked for.
    facts: ClusterFacts | None = None

    @property
    def kubernetes_version(self) -> str | None:
        return self.facts.kubernetes_version if self.facts else None
