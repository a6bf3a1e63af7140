"""Notification delivery: the `notify.targets` and `notify.deliver` activities.

`notify.deliver` sends one event to one channel of one subscription and writes every attempt
to the delivery log, then raises on failure so Temporal retries it with backoff (the policy is
in `workflows/notification_dispatch.py`). Whether a failure is worth retrying is decided here: connection
errors, timeouts, 408, 429 and 5xx answers and transient SMTP replies retry; other 4xx answers,
permanent SMTP replies, a target in a private network (unless allowed) and a missing secrets
key do not.

Channels:
- webhook: a CloudEvents 1.0 JSON document (structured mode) POSTed to the URL, signed as
  `clusterflow.webhooks` describes. The event `id` is stable across retries.
- slack: an incoming-webhook message with the summary and an unsubscribe link.
- email: a plain-text message over SMTP to the integration's addresses, with `List-Unsubscribe`
  (RFC 8058 one-click) pointing at the unsubscribe link.
Secrets (the signing secret, the webhook and Slack URLs) are opened from their sealed form only
here, for the request, and never logged.

`operation.awaiting_approval` events also carry signed approve and reject links
(`clusterflow.approval_links`) on every channel: in the CloudEvent's `data.approval`, in the
Slack text and in the email body. They are signed here, when the message is built, and are
never stored (the outbox row holds the event without them) or logged.
"""

from __future__ import annotations

import asyncio
import email.policy
import ipaddress
import json
import logging
import smtplib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow import __version__, approval_links, metrics, vault, webhooks
from clusterflow.contracts.notifications import DeliveryResult, DeliveryTarget
from clusterflow.records import notifications
from clusterflow.records.db import DbPool
from clusterflow.records.notifications import EventRow, IntegrationRow, SubscriptionRow
from clusterflow.settings import Settings

logger = logging.getLogger(__name__)


def integration_context(organization_id: str, channel: str) -> str:
    """Associated data binding a sealed integration secret to its organization and channel."""
    return f"notification-integration:{organization_id}:{channel}"


def unsubscribe_token(settings: Settings, subscription_id: str) -> str:
    return f"{subscription_id}.{vault.Sealer.from_settings(settings).mac('unsubscribe', subscription_id)}"


def unsubscribe_url(settings: Settings, subscription_id: str, channel: str | None) -> str:
    query = {"token": unsubscribe_token(settings, subscription_id)}
    if channel:
        query["channel"] = channel
    return f"{settings.api_url}/v1/notifications/unsubscribe?{urlencode(query)}"


@dataclass(frozen=True)
class DecisionLinks:
    """An awaiting-approval event's signed links, one per action, and when they expire."""

    approve_url: str
    reject_url: str
    expires_at: datetime


def decision_links(settings: Settings, event: EventRow) -> DecisionLinks | None:
    """The links for an `operation.awaiting_approval` event; None for other events, or when no
    vault key is configured to sign them (the event then goes out without links)."""
    data = event.data or {}
    if event.topic != "operation.awaiting_approval" or not data.get("approvalExpiresAt"):
        return None
    operation_id, cluster = str(data.get("operationId") or ""), str(data.get("clusterName") or "")
    if not operation_id or not cluster:
        return None
    expires_at = datetime.fromisoformat(str(data["approvalExpiresAt"]))
    try:
        urls = {
            action: approval_links.url(
                settings,
                event.organization_id,
                cluster,
                approval_links.token(settings, operation_id, action, expires_at),
                action,
            )
            for action in approval_links.ACTIONS
        }
    except vault.VaultNotConfigured:
        logger.warning("approval links for %s left out: no vault key is configured", operation_id)
        return None
    return DecisionLinks(urls["APPROVE"], urls["REJECT"], expires_at)


def cloud_event(settings: Settings, event: EventRow) -> dict[str, Any]:
    created: datetime = event.created_at
    data = dict(event.data or {})
    links = decision_links(settings, event)
    if links is not None:
        data["approval"] = {
            "approveUrl": links.approve_url,
            "rejectUrl": links.reject_url,
            "expiresAt": links.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "method": "POST",
            "authorization": "an owner's API key",
        }
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": f"{settings.api_url}/v1/organizations/{event.organization_id}",
        "type": f"dev.clusterflow.{event.topic}",
        "subject": event.subject,
        "time": created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "organizationid": event.organization_id,
        "data": data,
    }


def summary(event: EventRow) -> str:
    data = event.data or {}
    what = data.get("clusterName") or data.get("clusterId") or event.subject or ""
    kind = data.get("operationType", "")
    line = f"{event.topic}: {kind} {what}".replace("  ", " ").strip()
    if data.get("message"):
        line += f" - {data['message']}"
    return line


@dataclass
class SendFailure(Exception):
    message: str
    retryable: bool
    response_status: int | None = None


class NotifyActivities:
    def __init__(self, pool: DbPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    @activity.defn(name="notify.targets")
    async def targets(self, event_id: str) -> list[DeliveryTarget]:
        rows = await notifications.targets(self.pool, event_id)
        return [DeliveryTarget(event_id, r.subscription_id, r.channel) for r in rows]

    @activity.defn(name="notify.deliver")
    async def deliver(self, target: DeliveryTarget) -> DeliveryResult:
        attempt = activity.info().attempt
        event = await notifications.event(self.pool, target.event_id)
        subscription = await notifications.subscription_by_id(self.pool, target.subscription_id)
        if event is None or subscription is None:
            return DeliveryResult(target.channel, False, "skipped: the event or subscription no longer exists")
        integration = await notifications.get_integration(self.pool, event.organization_id, target.channel)
        started = time.monotonic()

        async def log(outcome: str, status: int | None = None, error: str | None = None) -> None:
            metrics.NOTIFICATION_DELIVERIES.labels(target.channel, outcome).inc()
            await notifications.log_attempt(
                self.pool,
                event_id=event.id,
                subscription_id=subscription.id,
                organization_id=event.organization_id,
                topic=event.topic,
                channel=target.channel,
                attempt=attempt,
                outcome=outcome,
                response_status=status,
                error=error,
                duration_ms=int((time.monotonic() - started) * 1000),
            )

        if (
            integration is None
            or not integration.enabled
            or not subscription.enabled
            or target.channel not in subscription.channels
        ):
            await log("SKIPPED", error="unsubscribed, or the integration was removed or disabled")
            return DeliveryResult(target.channel, False, "skipped")
        try:
            status = await self._send(target.channel, event, subscription, integration)
        except SendFailure as failure:
            final = not failure.retryable or attempt >= target.max_attempts
            await log("FAILED" if final else "RETRYING", failure.response_status, failure.message)
            logger.warning(
                "%s delivery of %s (%s) attempt %d %s: %s",
                target.channel,
                event.id,
                event.topic,
                attempt,
                "failed for good" if final else "will be retried",
                failure.message,
            )
            raise ApplicationError(
                f"{target.channel} delivery failed: {failure.message}",
                type="NOTIFICATION_DELIVERY_FAILED",
                non_retryable=not failure.retryable,
            ) from None
        await log("DELIVERED", status)
        return DeliveryResult(target.channel, True, f"attempt {attempt}")

    # --- channels ---------------------------------------------------------------------------

    def _secret(self, integration: IntegrationRow) -> dict[str, Any]:
        unopenable = "the integration's secret cannot be opened with the configured key"
        if integration.secret_ciphertext is None:  # no sealed secret stored: nothing to open
            raise SendFailure(unopenable, retryable=False)
        try:
            sealed = vault.open_bytes(
                self.settings,
                integration.secret_ciphertext,
                integration_context(integration.organization_id, integration.channel),
            )
        except vault.VaultNotConfigured as err:
            raise SendFailure(str(err), retryable=False) from None
        except Exception:  # wrong key (rotated without re-sealing) or a tampered row
            raise SendFailure(unopenable, False) from None
        value: dict[str, Any] = json.loads(sealed)
        return value

    async def _send(
        self, channel: str, event: EventRow, subscription: SubscriptionRow, integration: IntegrationRow
    ) -> int | None:
        if channel == "webhook":
            secret = self._secret(integration)
            body = json.dumps(cloud_event(self.settings, event), separators=(",", ":")).encode()
            headers = {
                "Content-Type": "application/cloudevents+json",
                webhooks.SIGNATURE_HEADER: webhooks.sign(secret["signingSecret"], body),
                "X-Clusterflow-Delivery-Attempt": str(activity.info().attempt),
            }
            return await self._post(secret["webhookUrl"], body, headers)
        if channel == "slack":
            secret = self._secret(integration)
            link = unsubscribe_url(self.settings, subscription.id, "slack")
            text = summary(event)
            links = decision_links(self.settings, event)
            if links is not None:
                text += (
                    f"\nOwners (POST with an owner's API key, once, before {links.expires_at:%Y-%m-%d %H:%M} UTC): "
                    f"<{links.approve_url}|Approve> · <{links.reject_url}|Reject>"
                )
            text += f"\n<{link}|Unsubscribe from {event.topic}>"
            payload: dict[str, Any] = {"text": text}
            if integration.config.get("channel"):
                payload["channel"] = integration.config["channel"]
            return await self._post(
                secret["webhookUrl"], json.dumps(payload).encode(), {"Content-Type": "application/json"}
            )
        if channel == "email":
            await self._email(event, subscription, integration.config.get("addresses") or [])
            return None
        raise SendFailure(f"unknown channel {channel}", retryable=False)

    async def _check_target(self, url: str) -> None:
        """Refuse targets inside private networks (SSRF) unless the deployment allows them."""
        if self.settings.notification_allow_private_targets:
            return
        parts = urlsplit(url)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
        except OSError as err:
            raise SendFailure(f"cannot resolve {parts.hostname}: {err}", retryable=True) from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
                raise SendFailure(f"{parts.hostname} resolves to a private address", retryable=False)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        await self._check_target(url)
        headers = {"User-Agent": f"clusterflow/{__version__}"} | headers
        try:
            async with httpx.AsyncClient(timeout=self.settings.notification_http_timeout_seconds) as client:
                response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as err:
            raise SendFailure(f"{type(err).__name__}: {err}", retryable=True) from None
        if response.is_success:
            return response.status_code
        retryable = response.status_code in (408, 425, 429) or response.status_code >= 500
        raise SendFailure(f"HTTP {response.status_code}", retryable, response.status_code)

    async def _email(self, event: EventRow, subscription: SubscriptionRow, addresses: list[str]) -> None:
        settings = self.settings
        if not settings.smtp_host:
            raise SendFailure("no SMTP server is configured (CLUSTERFLOW_SMTP_HOST)", retryable=False)
        if not addresses:
            raise SendFailure("the email integration has no addresses", retryable=False)
        link = unsubscribe_url(settings, subscription.id, "email")
        # Long lines stay unfolded (RFC 5322 allows 998): mail clients mangle folded URLs.
        message = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
        message["Subject"] = f"[clusterflow] {summary(event)}"[:200]
        message["From"] = settings.smtp_from
        message["To"] = ", ".join(addresses)
        message["Message-ID"] = f"<{event.id}@clusterflow>"
        message["List-Unsubscribe"] = f"<{link}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        details = json.dumps(event.data, indent=2, sort_keys=True, default=str)
        decide = ""
        links = decision_links(settings, event)
        if links is not None:
            decide = (
                f"Owners decide by POSTing one of these with an owner's API key; each works once and "
                f"expires at {links.expires_at:%Y-%m-%d %H:%M} UTC:\n"
                f"Approve: {links.approve_url}\nReject: {links.reject_url}\n\n"
            )
        message.set_content(f"{summary(event)}\n\n{details}\n\n{decide}Unsubscribe from {event.topic}: {link}\n")

        def send() -> None:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
            with smtplib.SMTP(
                settings.smtp_host or "", settings.smtp_port, timeout=settings.notification_http_timeout_seconds
            ) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls()
                if settings.smtp_username and password:
                    smtp.login(settings.smtp_username, password)
                smtp.send_message(message)

        try:
            await asyncio.to_thread(send)
        except smtplib.SMTPResponseException as err:
            raise SendFailure(f"SMTP {err.smtp_code}", retryable=err.smtp_code < 500) from None
        except smtplib.SMTPRecipientsRefused:
            raise SendFailure("SMTP refused every recipient", retryable=False) from None
        except (OSError, smtplib.SMTPException) as err:
            raise SendFailure(f"SMTP: {type(err).__name__}: {err}", retryable=True) from None
