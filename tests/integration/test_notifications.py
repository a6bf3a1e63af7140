"""Notifications end to end: the API configures integrations and subscriptions, a real deploy
changes status, the worker's dispatcher and the NotificationDispatch workflow deliver to a local
HTTP receiver (webhook, Slack) and a local SMTP server, with retries, a delivery log, verified
signatures and a working unsubscribe link."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from clusterflow.records import notifications
from clusterflow.records.organizations import create_api_key
from clusterflow.settings import Settings
from clusterflow.webhooks import SIGNATURE_HEADER, SignatureError, verify_signature
from clusterflow.worker.notifications import run_dispatcher
from tests.agent_support import VAULT_KEY
from tests.conftest import Org, Services, test_settings
from tests.fakes.receivers import HttpReceiver, SmtpReceiver
from tests.helpers import deploy_document, wait_for_operation

pytestmark = pytest.mark.usefixtures("worker", "dispatcher")


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as http:
        yield http


@pytest.fixture
def settings(services: Services, smtp: SmtpReceiver) -> Settings:
    return test_settings(
        services,
        vault_keys={"k1": VAULT_KEY},
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        notification_allow_private_targets=True,
        notification_retry_initial_seconds=0.1,
        notification_retry_max_seconds=0.5,
        notification_max_attempts=4,
        notification_dispatch_interval_seconds=0.1,
    )


@pytest.fixture
async def dispatcher(pool: asyncpg.Pool, temporal_client: Client, settings: Settings) -> AsyncIterator[None]:
    task = asyncio.create_task(run_dispatcher(pool, temporal_client, settings, settings.task_queue))
    yield
    task.cancel()


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def deliveries(api: httpx.AsyncClient, org: Org, topic: str) -> list[dict[str, Any]]:
    response = await api.get(f"/v1/notifications/subscriptions/{topic}/deliveries", headers=org.headers())
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_a_deploy_is_announced_on_every_channel_signed_and_unsubscribable(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, receiver: HttpReceiver, smtp: SmtpReceiver
) -> None:
    created = await api.put(
        "/v1/notifications/integrations/webhook",
        json={"channel": "webhook", "config": {"webhookUrl": receiver.url("/hook?key=abc")}, "enabled": True},
        headers=org.headers(),
    )
    assert created.status_code == 200, created.text
    secret = created.json()["data"]["signingSecret"]
    assert secret.startswith("whsec_")
    slack = await api.put(
        "/v1/notifications/integrations/slack",
        json={"config": {"webhookUrl": receiver.url("/slack/T000/B000/XXXX"), "channel": "#ops"}},
        headers=org.headers(),
    )
    assert slack.status_code == 200, slack.text
    email = await api.put(
        "/v1/notifications/integrations/email",
        json={"config": {"addresses": ["sre@example.com", "oncall@example.com"]}},
        headers=org.headers(),
    )
    assert email.status_code == 200, email.text
    for topic, channels in (("operation.started", ["webhook"]), ("operation.succeeded", ["webhook", "slack", "email"])):
        response = await api.put(
            f"/v1/notifications/subscriptions/{topic}", json={"channels": channels}, headers=org.headers()
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"]["channels"] == channels

    # Secrets never come back, and are not stored in clear.
    shown = (await api.get("/v1/notifications/integrations/webhook", headers=org.headers())).json()["data"]
    assert shown["signingSecret"] is None
    assert shown["config"]["webhookUrl"] == "http://127.0.0.1/…"
    listed = (await api.get("/v1/notifications/integrations", headers=org.headers())).text
    assert secret not in listed and "XXXX" not in listed and "key=abc" not in listed
    stored = await pool.fetch("SELECT * FROM notification_integrations WHERE organization_id = $1", org.id)
    assert secret.encode() not in b"".join(r["secret_ciphertext"] or b"" for r in stored)
    assert "XXXX" not in json.dumps([dict(r["config"]) for r in stored])

    accepted = (await api.post("/v1/clusters", json=deploy_document("notified"), headers=org.headers())).json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED"

    await eventually(
        lambda: len(receiver.at("/hook?key=abc")) == 2 and receiver.at("/slack/T000/B000/XXXX") and smtp.messages
    )
    hooks = receiver.at("/hook?key=abc")
    events = []
    for hook in hooks:
        assert hook.headers["Content-Type"] == "application/cloudevents+json"
        timestamp = verify_signature(secret, hook.headers[SIGNATURE_HEADER], hook.body)
        with pytest.raises(SignatureError):  # a replay after the tolerance window is refused
            verify_signature(secret, hook.headers[SIGNATURE_HEADER], hook.body, now=timestamp + 301)
        with pytest.raises(SignatureError):  # so is a tampered body
            verify_signature(secret, hook.headers[SIGNATURE_HEADER], hook.body.replace(b"operation", b"0peration"))
        events.append(json.loads(hook.body))
    assert sorted(e["type"] for e in events) == [
        "dev.clusterflow.operation.started",
        "dev.clusterflow.operation.succeeded",
    ]
    done = next(e for e in events if e["type"].endswith("succeeded"))
    assert done["specversion"] == "1.0"
    assert done["subject"] == accepted["operationId"]
    assert done["data"]["operationId"] == accepted["operationId"]
    assert done["data"]["status"] == "SUCCEEDED"
    assert done["data"]["clusterName"] == "notified"
    assert done["organizationid"] == org.id

    slack_message = json.loads(receiver.at("/slack/T000/B000/XXXX")[0].body)
    assert "operation.succeeded" in slack_message["text"] and "notified" in slack_message["text"]
    assert slack_message["channel"] == "#ops"

    mail = smtp.messages[0]
    assert "notified" in mail["Subject"]
    assert mail["To"] == "sre@example.com, oncall@example.com"
    unsubscribe_link = mail["List-Unsubscribe"].strip("<>")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The receiver answers before the delivery log row is written: wait for all three.
    async def logged() -> list[dict[str, Any]] | None:
        entries = await deliveries(api, org, "operation.succeeded")
        return entries if len(entries) == 3 else None

    log = await eventually(logged)
    assert sorted((d["channel"], d["outcome"], d["attempt"]) for d in log) == [
        ("email", "DELIVERED", 1),
        ("slack", "DELIVERED", 1),
        ("webhook", "DELIVERED", 1),
    ]

    # The link from the email works without an API key, and only for email.
    link = urlsplit(unsubscribe_link)
    assert link.path == "/v1/notifications/unsubscribe"
    forged = await api.get(link.path, params={"token": link.query.split("token=")[1].split("&")[0][:-2] + "xx"})
    assert forged.status_code == 404
    response = await api.get(f"{link.path}?{link.query}")
    assert response.status_code == 200, response.text
    subscription = (await api.get("/v1/notifications/subscriptions/operation.succeeded", headers=org.headers())).json()
    assert subscription["data"]["channels"] == ["webhook", "slack"]
    assert subscription["data"]["enabled"] is True


async def test_failing_receivers_are_retried_with_backoff_and_logged(
    api: httpx.AsyncClient, org: Org, receiver: HttpReceiver
) -> None:
    receiver.statuses["/flaky"] = [503, 500, 200]
    receiver.statuses["/gone"] = [410]
    await api.put(
        "/v1/notifications/integrations/webhook",
        json={"config": {"webhookUrl": receiver.url("/flaky")}},
        headers=org.headers(),
    )
    await api.put(
        "/v1/notifications/integrations/slack",
        json={"config": {"webhookUrl": receiver.url("/gone")}},
        headers=org.headers(),
    )
    await api.put(
        "/v1/notifications/subscriptions/operation.failed",
        json={"channels": ["webhook", "slack"]},
        headers=org.headers(),
    )
    doc = deploy_document("doomed", failAt="NETWORK")
    accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
    assert (await wait_for_operation(api, org.headers(), accepted["operationId"]))["status"] == "FAILED"

    async def settled() -> list[dict[str, Any]] | None:
        log = await deliveries(api, org, "operation.failed")
        outcomes = {(d["channel"], d["outcome"]) for d in log}
        return log if {("webhook", "DELIVERED"), ("slack", "FAILED")} <= outcomes else None

    log = await eventually(settled)
    webhook = sorted((d["attempt"], d["outcome"], d["responseStatus"]) for d in log if d["channel"] == "webhook")
    assert webhook == [(1, "RETRYING", 503), (2, "RETRYING", 500), (3, "DELIVERED", 200)]
    # A 410 is permanent: one attempt, no retry.
    assert [(d["attempt"], d["outcome"], d["responseStatus"]) for d in log if d["channel"] == "slack"] == [
        (1, "FAILED", 410)
    ]
    # Every retry carries the same event, so a receiver can deduplicate by its id.
    assert len({json.loads(r.body)["id"] for r in receiver.at("/flaky")}) == 1
    assert len(receiver.at("/gone")) == 1


async def test_topics_without_a_workflow_are_delivered_too(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, receiver: HttpReceiver
) -> None:
    created = await api.post(
        "/v1/notifications/integrations/webhook",
        json={"config": {"webhookUrl": receiver.url("/agents")}},
        headers=org.headers(),
    )
    secret = created.json()["data"]["signingSecret"]
    await api.put(
        "/v1/notifications/subscriptions/agent.disconnected", json={"channels": ["webhook"]}, headers=org.headers()
    )
    # Not subscribed: nothing is queued.
    assert await notifications.enqueue(pool, org.id, "cloud_account.disconnected", "ca_1", {}) is None
    event_id = await notifications.enqueue(pool, org.id, "agent.disconnected", "cl_1", {"clusterName": "edge-1"})
    assert event_id is not None
    await eventually(lambda: receiver.at("/agents"))
    hook = receiver.at("/agents")[0]
    verify_signature(secret, hook.headers[SIGNATURE_HEADER], hook.body)
    event = json.loads(hook.body)
    assert (event["id"], event["type"], event["data"]) == (
        event_id,
        "dev.clusterflow.agent.disconnected",
        {"clusterName": "edge-1"},
    )

    # Past the retention period the event and its delivery log go.
    await eventually(lambda: deliveries(api, org, "agent.disconnected"))
    await eventually(lambda: pool.fetchval("SELECT dispatched_at FROM notification_outbox WHERE id = $1", event_id))
    assert await notifications.prune(pool, 0) >= 1
    assert await notifications.event(pool, event_id) is None
    assert await deliveries(api, org, "agent.disconnected") == []


async def test_configuration_is_validated_scoped_and_role_checked(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, receiver: HttpReceiver
) -> None:
    from clusterflow.records.organizations import create_api_key, create_organization

    headers = org.headers()
    bad_topic = await api.put(
        "/v1/notifications/subscriptions/operation.exploded", json={"channels": ["email"]}, headers=headers
    )
    assert bad_topic.status_code == 422
    assert bad_topic.json()["error"]["details"][0]["field"].endswith("topic")
    no_channels = await api.put(
        "/v1/notifications/subscriptions/operation.failed", json={"channels": []}, headers=headers
    )
    assert no_channels.status_code == 422
    bad_url = await api.put(
        "/v1/notifications/integrations/webhook", json={"config": {"webhookUrl": "ftp://x"}}, headers=headers
    )
    assert bad_url.status_code == 422
    assert bad_url.json()["error"]["details"][0]["field"] == "config.webhookUrl"
    bad_mail = await api.put(
        "/v1/notifications/integrations/email", json={"config": {"addresses": ["nope"]}}, headers=headers
    )
    assert bad_mail.json()["error"]["details"][0]["field"] == "config.addresses[0]"
    mismatch = await api.put("/v1/notifications/integrations/email", json={"channel": "slack"}, headers=headers)
    assert mismatch.status_code == 422
    unknown_channel = await api.get("/v1/notifications/integrations/pager", headers=headers)
    assert unknown_channel.status_code == 422

    _, viewer = await create_api_key(pool, org.id, "viewer", "viewer")
    denied = await api.put(
        "/v1/notifications/integrations/webhook",
        json={"config": {"webhookUrl": receiver.url("/x")}},
        headers=org.headers(viewer),
    )
    assert denied.status_code == 403
    ok = await api.put(
        "/v1/notifications/integrations/webhook", json={"config": {"webhookUrl": receiver.url("/x")}}, headers=headers
    )
    first_secret = ok.json()["data"]["signingSecret"]
    again = await api.put(
        "/v1/notifications/integrations/webhook", json={"config": {"webhookUrl": receiver.url("/y")}}, headers=headers
    )
    assert again.json()["data"]["signingSecret"] is None  # replacing keeps the secret
    rotated = await api.put(
        "/v1/notifications/integrations/webhook?rotateSecret=true",
        json={"config": {"webhookUrl": receiver.url("/y")}},
        headers=headers,
    )
    assert rotated.json()["data"]["signingSecret"] not in (None, first_secret)
    assert (await api.get("/v1/notifications/integrations/webhook", headers=org.headers(viewer))).status_code == 200

    other_org = await create_organization(pool, "other")
    _, other_key = await create_api_key(pool, other_org, "owner", "owner")
    assert (await api.get("/v1/notifications/integrations/webhook", headers=org.headers(other_key))).status_code == 404
    assert (await api.get("/v1/notifications/integrations", headers=org.headers(other_key))).json()["data"] == []

    removed = await api.delete("/v1/notifications/integrations/webhook", headers=headers)
    assert removed.status_code == 200 and removed.json()["data"] is True
    assert (await api.delete("/v1/notifications/integrations/webhook", headers=headers)).status_code == 404
    await api.put("/v1/notifications/subscriptions/operation.failed", json={"channels": ["email"]}, headers=headers)
    assert (await api.delete("/v1/notifications/subscriptions/operation.failed", headers=headers)).status_code == 200
    assert (await api.get("/v1/notifications/subscriptions/operation.failed", headers=headers)).status_code == 404
    assert (await api.get("/v1/notifications/unsubscribe", params={"token": "nsub_x.y"})).status_code == 404


async def test_targets_in_private_networks_are_refused_unless_allowed(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, receiver: HttpReceiver, settings: Settings
) -> None:
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from clusterflow.activities.notification_delivery import NotifyActivities
    from clusterflow.contracts.notifications import DeliveryTarget

    await api.put(
        "/v1/notifications/integrations/webhook",
        json={"config": {"webhookUrl": receiver.url("/internal")}},
        headers=org.headers(),
    )
    subscription = await api.put(
        "/v1/notifications/subscriptions/cloud_account.disconnected",
        json={"channels": ["webhook"]},
        headers=org.headers(),
    )
    # Queued as already dispatched, so only the activity run below delivers it.
    async with pool.acquire() as conn:
        event = await conn.fetchval(
            """INSERT INTO notification_outbox (id, organization_id, topic, subject, data, dispatched_at)
               VALUES ('evt_private_' || md5(random()::text), $1, 'cloud_account.disconnected', 'ca_1', '{}', now())
               RETURNING id""",
            org.id,
        )
    strict = NotifyActivities(pool, settings.model_copy(update={"notification_allow_private_targets": False}))
    target = DeliveryTarget(event, subscription.json()["data"]["id"], "webhook", max_attempts=5)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(strict.deliver, target)
    assert refused.value.non_retryable
    assert receiver.at("/internal") == []
    log = await deliveries(api, org, "cloud_account.disconnected")
    assert [(d["outcome"], d["error"]) for d in log] == [("FAILED", "127.0.0.1 resolves to a private address")]


async def test_the_awaiting_approval_notification_carries_links_that_decide_once(
    api: httpx.AsyncClient,
    org: Org,
    pool: asyncpg.Pool,
    receiver: HttpReceiver,
    smtp: SmtpReceiver,
    temporal_client: Client,
) -> None:
    created = await api.put(
        "/v1/notifications/integrations/webhook",
        json={"config": {"webhookUrl": receiver.url("/approvals")}},
        headers=org.headers(),
    )
    secret = created.json()["data"]["signingSecret"]
    await api.put(
        "/v1/notifications/integrations/slack",
        json={"config": {"webhookUrl": receiver.url("/slack/T1/B1/YYYY")}},
        headers=org.headers(),
    )
    await api.put(
        "/v1/notifications/integrations/email",
        json={"config": {"addresses": ["owners@example.com"]}},
        headers=org.headers(),
    )
    subscribed = await api.put(
        "/v1/notifications/subscriptions/operation.awaiting_approval",
        json={"channels": ["webhook", "slack", "email"]},
        headers=org.headers(),
    )
    assert subscribed.status_code == 200, subscribed.text
    deployed = (await api.post("/v1/clusters", json=deploy_document("linked"), headers=org.headers())).json()["data"]
    assert (await wait_for_operation(api, org.headers(), deployed["operationId"]))["status"] == "SUCCEEDED"
    _, editor = await create_api_key(pool, org.id, "editor", "editor")
    _, other_owner = await create_api_key(pool, org.id, "second owner", "owner")
    accepted = (await api.delete(f"/v1/clusters/{deployed['clusterId']}", headers=org.headers(editor))).json()["data"]
    operation_id = accepted["operationId"]

    await eventually(lambda: receiver.at("/approvals") and receiver.at("/slack/T1/B1/YYYY") and smtp.messages)
    hook = receiver.at("/approvals")[0]
    verify_signature(secret, hook.headers[SIGNATURE_HEADER], hook.body)
    event = json.loads(hook.body)
    assert event["type"] == "dev.clusterflow.operation.awaiting_approval"
    links = event["data"]["approval"]
    record = (await api.get(f"/v1/operations/{operation_id}", headers=org.headers())).json()["data"]
    assert links["expiresAt"][:19] == record["approval"]["expiresAt"][:19]  # the link expires with the window
    approve, reject = urlsplit(links["approveUrl"]), urlsplit(links["rejectUrl"])
    assert approve.path == f"/v1/organizations/{org.id}/clusters/linked/approval" == reject.path
    assert "action=APPROVE" in approve.query and "action=REJECT" in reject.query
    # Slack and email carry the same links.
    slack_text = json.loads(receiver.at("/slack/T1/B1/YYYY")[0].body)["text"]
    assert links["approveUrl"] in slack_text and links["rejectUrl"] in slack_text
    mail = smtp.messages[0].get_payload()
    assert links["approveUrl"] in mail and links["rejectUrl"] in mail

    # A link decides only with an owner's key, only for its own action, and a forged one nothing.
    token = approve.query.split("token=")[1].split("&")[0]
    assert (await api.post(f"{approve.path}?{approve.query}", headers=org.headers(editor))).status_code == 403
    swapped = await api.post(approve.path, params={"token": token, "action": "reject"}, headers=org.headers())
    assert swapped.status_code == 403 and swapped.json()["error"]["code"] == "INVALID_APPROVAL_TOKEN"
    forged = await api.post(
        approve.path, params={"token": token[:-2] + "xx", "action": "APPROVE"}, headers=org.headers()
    )
    assert forged.status_code == 403
    history = await temporal_client.get_workflow_handle(operation_id).fetch_history()
    assert not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED for e in history.events)

    # `action` in any case; the link works once, for any owner.
    first = await api.post(approve.path, params={"token": token, "action": "approve"}, headers=org.headers())
    assert first.status_code == 200, first.text
    assert first.json()["data"]["status"] == "RUNNING"
    again = await api.post(f"{approve.path}?{approve.query}", headers=org.headers(other_owner))
    assert again.status_code == 409, again.text
    late_reject = await api.post(f"{reject.path}?{reject.query}", headers=org.headers(other_owner))
    assert late_reject.status_code == 409
    done = await wait_for_operation(api, org.headers(), operation_id)
    assert done["status"] == "SUCCEEDED" and done["approval"]["decision"] == "APPROVE"

    # The links are never stored or logged: not in the outbox, the delivery log or the audit log.
    stored = await pool.fetch(
        """SELECT data::text AS t FROM notification_outbox WHERE organization_id = $1
           UNION ALL SELECT coalesce(error, '') FROM notification_deliveries WHERE organization_id = $1
           UNION ALL SELECT details::text FROM audit_events WHERE organization_id = $1""",
        org.id,
    )
    assert stored and not any(token in r["t"] for r in stored)


async def test_two_owners_may_not_share_one_approval_link(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, receiver: HttpReceiver
) -> None:
    await api.put(
        "/v1/notifications/integrations/webhook",
        json={"config": {"webhookUrl": receiver.url("/two")}},
        headers=org.headers(),
    )
    await api.put(
        "/v1/notifications/subscriptions/operation.awaiting_approval",
        json={"channels": ["webhook"]},
        headers=org.headers(),
    )
    policy = await api.put(
        f"/v1/organizations/{org.id}/approval-policy", json={"approvalsRequired": 2}, headers=org.headers()
    )
    assert policy.status_code == 200, policy.text
    deployed = (await api.post("/v1/clusters", json=deploy_document("shared-link"), headers=org.headers())).json()[
        "data"
    ]
    assert (await wait_for_operation(api, org.headers(), deployed["operationId"]))["status"] == "SUCCEEDED"
    accepted = (await api.delete(f"/v1/clusters/{deployed['clusterId']}", headers=org.headers())).json()["data"]
    await eventually(lambda: receiver.at("/two"))
    approve = urlsplit(json.loads(receiver.at("/two")[0].body)["data"]["approval"]["approveUrl"])
    _, second = await create_api_key(pool, org.id, "second owner", "owner")

    first = await api.post(f"{approve.path}?{approve.query}", headers=org.headers())
    assert first.status_code == 200 and first.json()["data"]["status"] == "AWAITING_APPROVAL", first.text
    reused = await api.post(f"{approve.path}?{approve.query}", headers=org.headers(second))
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "APPROVAL_LINK_USED", reused.text
    # The second owner decides through the API instead.
    own = await api.post(
        f"/v1/operations/{accepted['operationId']}/approval", json={"action": "APPROVE"}, headers=org.headers(second)
    )
    assert own.status_code == 200 and own.json()["data"]["status"] == "RUNNING", own.text
