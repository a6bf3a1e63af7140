"""Notification integrations, subscriptions and the delivery log, in the reference's shapes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from clusterflow.api.schemas.common import Strict

Channel = Literal["webhook", "slack", "email"]
Topic = Literal[
    "operation.started",
    "operation.awaiting_approval",
    "operation.succeeded",
    "operation.failed",
    "operation.cancelled",
    "operation.rejected",
    "cloud_account.disconnected",
    "agent.disconnected",
]
"""The topics of `contracts/notifications.py` (a unit test keeps the two lists equal)."""


class IntegrationConfigInput(Strict):
    """The reference's `NotificationIntegrationConfigInput`; which fields apply depends on the channel."""

    type: str | None = Field(
        default=None, max_length=64, description="Free-form integration type (the reference's `type`)"
    )
    webhookUrl: str | None = Field(
        default=None, max_length=2048, description="webhook: the receiver URL; slack: the incoming-webhook URL"
    )
    addresses: list[Annotated[str, Field(max_length=254)]] | None = Field(
        default=None, max_length=50, description="email: the recipients"
    )
    channel: str | None = Field(default=None, max_length=200, description="slack: the channel to post to")
    workspaceId: str | None = Field(default=None, max_length=200)
    botTokenRef: str | None = Field(default=None, max_length=200, description="A reference to a token, never a token")
    installedBy: list[Annotated[str, Field(max_length=254)]] | None = Field(default=None, max_length=50)
    enabled: bool | None = None


class IntegrationInput(Strict):
    channel: Channel | None = Field(default=None, description="Must match the path's channel when given")
    config: IntegrationConfigInput = Field(default_factory=IntegrationConfigInput)
    enabled: bool = True


class IntegrationConfig(BaseModel):
    type: str | None = None
    webhookUrl: str | None = Field(default=None, description="Masked: scheme and host only")
    addresses: list[str] | None = None
    channel: str | None = None
    workspaceId: str | None = None
    botTokenRef: str | None = None
    installedBy: list[str] | None = None
    enabled: bool | None = None


class Integration(BaseModel):
    id: str
    orgId: str
    channel: Channel
    enabled: bool
    config: IntegrationConfig
    createdAt: str
    updatedAt: str
    signingSecret: str | None = Field(
        default=None,
        description="webhook: the HMAC signing secret, shown only when it is created or rotated",
    )


class SubscriptionInput(Strict):
    channels: list[Channel] = Field(min_length=1, max_length=3, description="At least one delivery channel")
    enabled: bool = True
    topic: Topic | None = Field(default=None, description="Must match the path's topic when given")


class Subscription(BaseModel):
    id: str
    orgId: str
    topic: Topic
    channels: list[Channel]
    enabled: bool
    system: bool = False
    createdAt: str
    updatedAt: str


class Delivery(BaseModel):
    id: int
    eventId: str
    channel: Channel
    attempt: int
    outcome: Literal["DELIVERED", "RETRYING", "FAILED", "SKIPPED"]
    responseStatus: int | None
    error: str | None
    durationMs: int
    attemptedAt: str


class UnsubscribeRequest(Strict):
    topic: str | None = Field(
        default=None, max_length=64, description="The topic to unsubscribe from (checked against the token)"
    )
    channel: Channel | None = Field(default=None, description="Only this channel; absent: every channel of the topic")
