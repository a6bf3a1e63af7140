"""Customer notifications: the topics a subscription names, and what the dispatch workflow and
its delivery activities exchange (one event, each subscribed channel, each delivery's outcome).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Topic(StrEnum):
    OPERATION_STARTED = "operation.started"
    OPERATION_AWAITING_APPROVAL = "operation.awaiting_approval"
    OPERATION_SUCCEEDED = "operation.succeeded"
    OPERATION_FAILED = "operation.failed"
    OPERATION_CANCELLED = "operation.cancelled"
    OPERATION_REJECTED = "operation.rejected"
    CLOUD_ACCOUNT_DISCONNECTED = "cloud_account.disconnected"
    AGENT_DISCONNECTED = "agent.disconnected"


TOPICS: tuple[str, ...] = tuple(t.value for t in Topic)
CHANNELS: tuple[str, ...] = ("webhook", "slack", "email")

TARGETS_ACTIVITY = "notify.targets"
DELIVER_ACTIVITY = "notify.deliver"


@dataclass
class DispatchInput:
    event_id: str
    max_attempts: int = 8
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    timeout_seconds: float = 30.0


@dataclass
class DeliveryTarget:
    event_id: str
    subscription_id: str
    channel: str
    max_attempts: int = 8


@dataclass
class DeliveryResult:
    channel: str
    delivered: bool
    detail: str = ""


@dataclass
class DispatchResult:
    event_id: str
    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
