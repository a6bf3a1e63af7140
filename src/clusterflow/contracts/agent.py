"""Contracts of the registered-cluster operations: register, unregister, resync, kubeconfig.

Kept apart from `contracts.py` because they belong to one feature; the same evolution rule
applies (fields only ever added, with defaults). The workflows talk to the agent only through
the database: the API process holding the agent's WebSocket reads requests (rotate, remove,
issue a kubeconfig) from the registration row and writes back the agent's answers, which the
activities poll while heartbeating. The one push into a workflow is the `agent_connected`
signal the API sends when an agent completes its registration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from clusterflow.contracts.operations import ExecutionPolicy

AGENT_CONNECTED_SIGNAL = "agent_connected"


class AgentErrorCode(StrEnum):
    """Stable error codes of the registered-cluster operations."""

    REGISTRATION_TIMED_OUT = "REGISTRATION_TIMED_OUT"
    AGENT_NOT_CONNECTED = "AGENT_NOT_CONNECTED"
    AGENT_TIMED_OUT = "AGENT_TIMED_OUT"
    KUBECONFIG_FAILED = "KUBECONFIG_FAILED"


@dataclass
class AgentReport:
    """What the agent read from the cluster through the kubernetes API."""

    kubernetes_version: str | None = None
    node_count: int = 0
    architecture: str | None = None
    region: str | None = None
    agent_version: str | None = None


@dataclass
class RegisterInput:
    operation_id: str
    organization_id: str
    cluster_id: str
    cluster_name: str
    architecture: str
    timeout_seconds: float
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)


@dataclass
class AgentTaskInput:
    """Input of the operations that need the agent: unregister, resync, kubeconfig."""

    operation_id: str
    organization_id: str
    cluster_id: str
    cluster_name: str
    timeout_seconds: float
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)


@dataclass
class AgentStateInput:
    cluster_id: str


@dataclass
class AgentState:
    connection_status: str
    agent_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentTaskResult:
    message: str
    outputs: dict[str, Any] = field(default_factory=dict)
