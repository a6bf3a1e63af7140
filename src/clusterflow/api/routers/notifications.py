"""Notification integrations (where to deliver) and subscriptions (what to deliver), as the
reference names them, plus the delivery log and the unsubscribe link.

Integration secrets (a webhook's URL and signing secret, a Slack incoming-webhook URL) are
sealed with AES-GCM before they reach the database (`clusterflow.vault`) and never come
back: responses show the URL masked, and a webhook's signing secret only in the answer that
created (or rotated) it. The unsubscribe link needs no API key: its token is a MAC over the
subscription ID under the deployment's secrets key, so it cannot be forged or pointed at
another subscription.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError

from clusterflow import vault
from clusterflow.api.deps import Admin, AppSettings, Pool, Viewer
from clusterflow.api.errors import ApiError, not_found, request_id_of, validation_error
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.schemas.notifications import (
    Channel,
    Delivery,
    Integration,
    IntegrationConfig,
    IntegrationInput,
    Subscription,
    SubscriptionInput,
    Topic,
    UnsubscribeRequest,
)
from clusterflow.api.views import timestamp
from clusterflow.records import notifications
from clusterflow.records.notifications import IntegrationRow, SubscriptionRow

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

ChannelPath = Annotated[Channel, Path(description="Delivery channel: webhook, slack or email")]
TopicPath = Annotated[Topic, Path(description="Notification topic")]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _ts(value: Any) -> str:
    out = timestamp(value)
    assert out is not None
    return out


def _context(organization_id: str, channel: str) -> str:
    # Same binding as activities/notification_delivery.py's integration_context (the API may not import activities).
    return f"notification-integration:{organization_id}:{channel}"


def _mask(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…"


def _integration_view(row: IntegrationRow, signing_secret: str | None = None) -> Integration:
    return Integration(
        id=row.id,
        orgId=row.organization_id,
        channel=row.channel,
        enabled=row.enabled,
        config=IntegrationConfig(**row.config),
        createdAt=_ts(row.created_at),
        updatedAt=_ts(row.updated_at),
        signingSecret=signing_secret,
    )


def _subscription_view(row: SubscriptionRow) -> Subscription:
    return Subscription(
        id=row.id,
        orgId=row.organization_id,
        topic=row.topic,
        channels=list(row.channels),
        enabled=row.enabled,
        createdAt=_ts(row.created_at),
        updatedAt=_ts(row.updated_at),
    )


def _field_error(field: str, message: str) -> ApiError:
    return ApiError(
        422, "VALIDATION_FAILED", f"{field}: {message}", [{"field": field, "message": message, "type": "value_error"}]
    )


def _check_url(url: str | None, field: str) -> str:
    if not url:
        raise _field_error(field, "is required for this channel")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _field_error(field, "must be an http or https URL")
    return url


@router.get("/integrations", response_model=Envelope[list[Integration]], responses=ERRORS, summary="List integrations")
async def list_integrations(request: Request, principal: Viewer, pool: Pool) -> Envelope[list[Integration]]:
    rows = await notifications.list_integrations(pool, principal.organization_id)
    return Envelope(id=request_id_of(request), message="integrations", data=[_integration_view(r) for r in rows])


async def _save_integration(
    request: Request, principal: Admin, pool: Pool, settings: AppSettings, channel: str, rotate: bool
) -> Envelope[Integration]:
    try:
        body = IntegrationInput.model_validate_json(await request.body() or b"{}")
    except ValidationError as err:
        raise validation_error(err.errors()) from err
    if body.channel is not None and body.channel != channel:
        raise _field_error("channel", f"must match the path's channel {channel}")
    config = body.config.model_dump(exclude_none=True)
    sealed: dict[str, str] | None = None
    signing_secret: str | None = None
    existing = await notifications.get_integration(pool, principal.organization_id, channel)
    context = _context(principal.organization_id, channel)
    try:
        if channel == "email":
            addresses = body.config.addresses or []
            if not addresses:
                raise _field_error("config.addresses", "at least one address is required")
            for i, address in enumerate(addresses):
                if not _EMAIL.match(address):
                    raise _field_error(f"config.addresses[{i}]", "is not an email address")
        else:
            url = _check_url(body.config.webhookUrl, "config.webhookUrl")
            config["webhookUrl"] = _mask(url)
            sealed = {"webhookUrl": url}
            if channel == "webhook":
                previous = (
                    json.loads(vault.open_bytes(settings, existing.secret_ciphertext, context))
                    if existing is not None and existing.secret_ciphertext and not rotate
                    else None
                )
                if previous is None:
                    signing_secret = "whsec_" + secrets.token_urlsafe(32)
                sealed["signingSecret"] = signing_secret or previous["signingSecret"]  # type: ignore[index]
        ciphertext = vault.seal_bytes(settings, json.dumps(sealed).encode(), context) if sealed else None
    except vault.VaultNotConfigured as err:
        raise ApiError(503, "VAULT_NOT_CONFIGURED", f"{err}: integration secrets cannot be stored") from err
    row, created = await notifications.save_integration(
        pool,
        principal.organization_id,
        channel,
        enabled=body.enabled,
        config=config,
        secret_ciphertext=ciphertext,
        created_by=principal.key_id,
    )
    message = f"{channel} integration {'created' if created else 'saved'}"
    if signing_secret:
        message += "; store the signing secret now, it is not shown again"
    return Envelope(id=request_id_of(request), message=message, data=_integration_view(row, signing_secret))


_SAVE_DOC: dict[str, Any] = {
    "response_model": Envelope[Integration],
    "responses": ERRORS,
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IntegrationInput"}}},
        }
    },
}
RotateSecret = Annotated[bool, Query(description="webhook: issue a new signing secret (returned once)")]


@router.put("/integrations/{channel}", summary="Save (create or replace) the channel's integration", **_SAVE_DOC)
async def put_integration(
    request: Request,
    channel: ChannelPath,
    principal: Admin,
    pool: Pool,
    settings: AppSettings,
    rotateSecret: RotateSecret = False,
) -> Envelope[Integration]:
    return await _save_integration(request, principal, pool, settings, channel, rotateSecret)


@router.post("/integrations/{channel}", summary="Create the channel's integration (same as PUT)", **_SAVE_DOC)
async def post_integration(
    request: Request,
    channel: ChannelPath,
    principal: Admin,
    pool: Pool,
    settings: AppSettings,
    rotateSecret: RotateSecret = False,
) -> Envelope[Integration]:
    return await _save_integration(request, principal, pool, settings, channel, rotateSecret)


@router.get(
    "/integrations/{channel}", response_model=Envelope[Integration], responses=ERRORS, summary="Get an integration"
)
async def get_integration(
    request: Request, channel: ChannelPath, principal: Viewer, pool: Pool
) -> Envelope[Integration]:
    row = await notifications.get_integration(pool, principal.organization_id, channel)
    if row is None:
        raise not_found("integration", channel)
    return Envelope(id=request_id_of(request), message="integration", data=_integration_view(row))


@router.delete(
    "/integrations/{channel}", response_model=Envelope[bool], responses=ERRORS, summary="Remove an integration"
)
async def delete_integration(request: Request, channel: ChannelPath, principal: Admin, pool: Pool) -> Envelope[bool]:
    if not await notifications.delete_integration(pool, principal.organization_id, channel):
        raise not_found("integration", channel)
    return Envelope(id=request_id_of(request), message=f"{channel} integration removed", data=True)


@router.get(
    "/subscriptions", response_model=Envelope[list[Subscription]], responses=ERRORS, summary="List subscriptions"
)
async def list_subscriptions(request: Request, principal: Viewer, pool: Pool) -> Envelope[list[Subscription]]:
    rows = await notifications.list_subscriptions(pool, principal.organization_id)
    return Envelope(id=request_id_of(request), message="subscriptions", data=[_subscription_view(r) for r in rows])


async def _save_subscription(
    request: Request, topic: str, body: SubscriptionInput, principal: Admin, pool: Pool
) -> Envelope[Subscription]:
    if body.topic is not None and body.topic != topic:
        raise _field_error("topic", f"must match the path's topic {topic}")
    channels: list[str] = list(dict.fromkeys(body.channels))
    row = await notifications.save_subscription(pool, principal.organization_id, topic, channels, body.enabled)
    return Envelope(id=request_id_of(request), message=f"subscribed to {topic}", data=_subscription_view(row))


@router.put(
    "/subscriptions/{topic}",
    response_model=Envelope[Subscription],
    responses=ERRORS,
    summary="Save the topic's subscription",
)
async def put_subscription(
    request: Request, topic: TopicPath, body: SubscriptionInput, principal: Admin, pool: Pool
) -> Envelope[Subscription]:
    return await _save_subscription(request, topic, body, principal, pool)


@router.post(
    "/subscriptions/{topic}", response_model=Envelope[Subscription], responses=ERRORS, summary="Subscribe (same as PUT)"
)
async def post_subscription(
    request: Request, topic: TopicPath, body: SubscriptionInput, principal: Admin, pool: Pool
) -> Envelope[Subscription]:
    return await _save_subscription(request, topic, body, principal, pool)


@router.get(
    "/subscriptions/{topic}", response_model=Envelope[Subscription], responses=ERRORS, summary="Get a subscription"
)
async def get_subscription(request: Request, topic: TopicPath, principal: Viewer, pool: Pool) -> Envelope[Subscription]:
    row = await notifications.get_subscription(pool, principal.organization_id, topic)
    if row is None:
        raise not_found("subscription", topic)
    return Envelope(id=request_id_of(request), message="subscription", data=_subscription_view(row))


@router.delete(
    "/subscriptions/{topic}", response_model=Envelope[bool], responses=ERRORS, summary="Remove a subscription"
)
async def delete_subscription(request: Request, topic: TopicPath, principal: Admin, pool: Pool) -> Envelope[bool]:
    if not await notifications.delete_subscription(pool, principal.organization_id, topic):
        raise not_found("subscription", topic)
    return Envelope(id=request_id_of(request), message=f"unsubscribed from {topic}", data=True)


@router.get(
    "/subscriptions/{topic}/deliveries",
    response_model=Envelope[list[Delivery]],
    responses=ERRORS,
    summary="Delivery log of a subscription: every attempt, newest first",
)
async def list_deliveries(
    request: Request,
    topic: TopicPath,
    principal: Viewer,
    pool: Pool,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Envelope[list[Delivery]]:
    subscription = await notifications.get_subscription(pool, principal.organization_id, topic)
    if subscription is None:
        raise not_found("subscription", topic)
    rows = await notifications.deliveries(pool, subscription.id, limit)
    data = [
        Delivery(
            id=r.id,
            eventId=r.event_id,
            channel=r.channel,
            attempt=r.attempt,
            outcome=r.outcome,
            responseStatus=r.response_status,
            error=r.error,
            durationMs=r.duration_ms,
            attemptedAt=_ts(r.attempted_at),
        )
        for r in rows
    ]
    return Envelope(id=request_id_of(request), message="deliveries", data=data)


Token = Annotated[str, Query(min_length=1, max_length=200, description="The token from the unsubscribe link")]
ChannelQuery = Annotated[Channel | None, Query(description="Only this channel; absent: every channel of the topic")]


async def _unsubscribe(
    request: Request, pool: Pool, settings: AppSettings, token: str, channel: str | None, topic: str | None
) -> Envelope[bool]:
    subscription_id, _, presented = token.partition(".")
    invalid = ApiError(404, "NOT_FOUND", "unsubscribe link not valid")
    try:
        expected = vault.Sealer.from_settings(settings).mac("unsubscribe", subscription_id)
    except vault.VaultNotConfigured as err:
        raise invalid from err
    if not secrets.compare_digest(presented.encode(), expected.encode()):  # bytes: the token is caller input
        raise invalid
    row = await notifications.subscription_by_id(pool, subscription_id)
    if row is None or (topic is not None and topic != row.topic):
        raise invalid
    await notifications.unsubscribe(pool, subscription_id, channel)
    what = f"{channel} notifications" if channel else "notifications"
    return Envelope(id=request_id_of(request), message=f"unsubscribed from {what} for {row.topic}", data=True)


@router.get("/unsubscribe", response_model=Envelope[bool], responses=ERRORS, summary="Unsubscribe link (no API key)")
async def unsubscribe_link(
    request: Request, pool: Pool, settings: AppSettings, token: Token, channel: ChannelQuery = None
) -> Envelope[bool]:
    return await _unsubscribe(request, pool, settings, token, channel, None)


@router.post(
    "/unsubscribe",
    response_model=Envelope[bool],
    responses=ERRORS,
    summary="Unsubscribe (the reference's request, and RFC 8058 one-click from mail clients)",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UnsubscribeRequest"}}},
        }
    },
)
async def unsubscribe(
    request: Request, pool: Pool, settings: AppSettings, token: Token, channel: ChannelQuery = None
) -> Envelope[bool]:
    topic: str | None = None
    raw = await request.body()
    # A mail client's one-click POST is form-encoded (`List-Unsubscribe=One-Click`): the token says it all.
    if raw and request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = UnsubscribeRequest.model_validate_json(raw)
        except ValidationError as err:
            raise validation_error(err.errors()) from err
        topic, channel = body.topic, body.channel or channel
    return await _unsubscribe(request, pool, settings, token, channel, topic)
