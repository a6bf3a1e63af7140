"""GCP and Azure accounts are re-verified on the schedule that re-verifies AWS accounts: the test
triggers the worker's real Temporal schedule, breaks the trust in the fake clouds (the Workload
Identity provider or the service account binding; the federated credential or the subscription's
role assignments), and watches the account turn DEGRADED through the API, with the failing step
and its remedy, then CONNECTED again once the trust is repaired; a `cloud_account.disconnected`
webhook arrives at a real receiver on each transition, and only then.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.client import Client, ScheduleOverlapPolicy

from clusterflow.settings import Settings
from clusterflow.worker.notifications import run_dispatcher
from clusterflow.worker.schedules import ensure_schedules, reverify_schedule_id
from tests.agent_support import VAULT_KEY
from tests.conftest import Org, Services, test_settings
from tests.fakes.arm import FakeArm
from tests.fakes.aws import MotoAws
from tests.fakes.gke import FakeGke
from tests.fakes.receivers import HttpReceiver
from tests.integration.test_federated_connect import ISSUER, arm, connect_azure, connect_gcp, gke, signing_key

__all__ = ["arm", "gke", "signing_key"]

pytestmark = pytest.mark.usefixtures("worker")

HOOK = "/hook"
FAILURES, RETRIES = "clusterflow_activity_failures_total", "clusterflow_activity_retries_total"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as http:
        yield http


@pytest.fixture
def settings(services: Services, gke: FakeGke, arm: FakeArm, signing_key: str, moto_aws: MotoAws) -> Settings:
    # The schedule re-verifies AWS accounts in the same run: against moto, never a real endpoint.
    return test_settings(
        services,
        aws_endpoint_url=moto_aws.url,
        enabled_providers=["local", "gcp", "azure"],
        public_url=ISSUER,
        platform_oidc_signing_key=signing_key,
        gcp_endpoint=gke.url,
        gcp_sts_endpoint=f"{gke.url}/v1/token",
        gcp_iam_credentials_endpoint=gke.url,
        azure_arm_endpoint=arm.url,
        azure_authority_host=arm.url,
        azure_ca_bundle=arm.ca_path,
        cloud_connect_poll_seconds=0.2,
        vault_keys={"k1": VAULT_KEY},
        notification_allow_private_targets=True,
        notification_dispatch_interval_seconds=0.1,
        notification_retry_initial_seconds=0.1,
    )


@pytest.fixture
async def schedule(temporal_client: Client, settings: Settings) -> AsyncIterator[Any]:
    """The worker's re-verification schedule (as every worker ensures it at start-up)."""
    await ensure_schedules(temporal_client, settings)
    handle = temporal_client.get_schedule_handle(reverify_schedule_id(settings))
    yield handle
    async for listed in await temporal_client.list_schedules():
        if listed.id.endswith(settings.task_queue):
            await temporal_client.get_schedule_handle(listed.id).delete()


@pytest.fixture
async def subscribed(
    api: httpx.AsyncClient,
    org: Org,
    receiver: HttpReceiver,
    pool: asyncpg.Pool,
    temporal_client: Client,
    settings: Settings,
) -> AsyncIterator[None]:
    """The organization subscribes a webhook to `cloud_account.disconnected`; the dispatcher runs."""
    created = await api.post(
        "/v1/notifications/integrations/webhook",
        json={"channel": "webhook", "config": {"webhookUrl": receiver.url(HOOK)}, "enabled": True},
        headers=org.headers(),
    )
    assert created.status_code in (200, 201), created.text
    subscribed = await api.put(
        "/v1/notifications/subscriptions/cloud_account.disconnected",
        json={"channels": ["webhook"]},
        headers=org.headers(),
    )
    assert subscribed.status_code in (200, 201), subscribed.text
    task = asyncio.create_task(run_dispatcher(pool, temporal_client, settings, settings.task_queue))
    yield
    task.cancel()


_last_trigger = [0.0]


async def reverify(schedule: Any, api: httpx.AsyncClient, org: Org, path: str, status: str) -> dict[str, Any]:
    """Run the schedule now (as its interval would) until a new check shows `status`. A
    schedule names each run by the second it starts, so triggers are spaced a second apart."""
    deadline = time.monotonic() + 30
    before = (await api.get(path, headers=org.headers())).json()["data"]["lastCheckedAt"]
    while True:
        if time.monotonic() - _last_trigger[0] > 2:
            await asyncio.sleep(max(0.0, _last_trigger[0] + 1.1 - time.monotonic()))
            await schedule.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
            _last_trigger[0] = time.monotonic()
        account: dict[str, Any] = (await api.get(path, headers=org.headers())).json()["data"]
        if account["status"] == status and account["lastCheckedAt"] not in (None, before):
            return account
        assert time.monotonic() < deadline, account
        await asyncio.sleep(0.1)


async def notifications(receiver: HttpReceiver, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while len(receiver.at(HOOK)) < count:
        assert time.monotonic() < deadline, f"{len(receiver.at(HOOK))} notifications, expected {count}"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # and no more than that
    hooks = receiver.at(HOOK)
    assert len(hooks) == count, [json.loads(h.body)["data"] for h in hooks]
    return [json.loads(h.body) for h in hooks]


@pytest.mark.usefixtures("subscribed")
async def test_a_broken_gcp_federation_is_degraded_then_connected_when_healed(
    api: httpx.AsyncClient, org: Org, gke: FakeGke, receiver: HttpReceiver, schedule: Any
) -> None:
    account = await connect_gcp(api, org, gke, "rv-gke", "acme-rv-1")
    path = f"/v1/cloud-accounts/gcp/{account['id']}"
    [(audience, trust)] = [(a, t) for a, t in gke.trusted.items() if t[2] == account["serviceAccountEmail"]]

    # The customer deletes the Workload Identity provider: the token exchange is refused.
    del gke.trusted[audience]
    degraded = await reverify(schedule, api, org, path, "DEGRADED")
    assert degraded["error"]["step"] == "token exchange"
    assert "GCP STS token exchange refused" in degraded["error"]["message"]
    assert "setup script again" in degraded["error"]["remedy"]
    [event] = await notifications(receiver, 1)
    assert event["type"] == "dev.clusterflow.cloud_account.disconnected"
    assert event["subject"] == account["id"]
    assert event["data"]["status"] == "DEGRADED" and event["data"]["previousStatus"] == "CONNECTED"
    assert event["data"]["step"] == "token exchange"

    # Still broken on the next round: still DEGRADED, and no second notification.
    await reverify(schedule, api, org, path, "DEGRADED")
    await notifications(receiver, 1)

    # The customer re-runs the script: CONNECTED again, announced once.
    gke.trust(audience, *trust)
    healed = await reverify(schedule, api, org, path, "CONNECTED")
    assert healed["error"] is None
    events = await notifications(receiver, 2)
    assert events[1]["data"]["status"] == "CONNECTED" and events[1]["data"]["previousStatus"] == "DEGRADED"

    # The provider stays but the service account's binding is gone: impersonation fails.
    gke.trust(audience, trust[0], trust[1], "someone-else@acme-rv-1.iam.gserviceaccount.com")
    degraded = await reverify(schedule, api, org, path, "DEGRADED")
    assert degraded["error"]["step"] == "impersonation"
    assert "workloadIdentityUser" in degraded["error"]["remedy"]
    await notifications(receiver, 3)


@pytest.mark.usefixtures("subscribed")
async def test_a_broken_azure_federation_is_degraded_then_connected_when_healed(
    api: httpx.AsyncClient, org: Org, arm: FakeArm, receiver: HttpReceiver, schedule: Any
) -> None:
    subscription = str(uuid.uuid4())
    account = await connect_azure(api, org, arm, "rv-aks", subscription, "rg-rv")
    path = f"/v1/cloud-accounts/azure/{account['id']}"
    connected = (await api.get(path, headers=org.headers())).json()["data"]

    # The customer removes the app's role assignments: the token works, reading the subscription does not.
    arm.revoked_subscriptions.add(subscription)
    degraded = await reverify(schedule, api, org, path, "DEGRADED")
    assert degraded["error"]["step"] == "subscription read"
    assert "AuthorizationFailed" in degraded["error"]["message"] or "authorization" in degraded["error"]["message"]
    assert "role assignments" in degraded["error"]["remedy"]
    [event] = await notifications(receiver, 1)
    assert event["data"]["status"] == "DEGRADED" and event["data"]["provider"] == "azure"
    # DEGRADED accounts stay usable, as in AWS: the next operation says what fails.
    issued = await api.post("/v1/cloud-credentials/azure", json={"clusterName": "rv-aks"}, headers=org.headers())
    assert issued.status_code == 200, issued.text

    arm.revoked_subscriptions.discard(subscription)
    healed = await reverify(schedule, api, org, path, "CONNECTED")
    assert healed["error"] is None
    await notifications(receiver, 2)

    # The federated credential is deleted: Entra ID refuses the token exchange.
    federated = arm.federated.pop(connected["clientId"])
    degraded = await reverify(schedule, api, org, path, "DEGRADED")
    assert degraded["error"]["step"] == "token exchange"
    assert "federated identity credential" in degraded["error"]["remedy"]
    arm.federated[connected["clientId"]] = federated
    await reverify(schedule, api, org, path, "CONNECTED")
    events = await notifications(receiver, 4)
    assert [e["data"]["status"] for e in events] == ["DEGRADED", "CONNECTED", "DEGRADED", "CONNECTED"]


def _metric(name: str, activity_type: str) -> float:
    return REGISTRY.get_sample_value(name, {"activity_type": activity_type}) or 0.0


async def test_a_connect_waiting_for_its_script_is_not_counted_as_activity_failures(
    api: httpx.AsyncClient, org: Org, gke: FakeGke, temporal_client: Client
) -> None:
    check = "federated_connect.check_gcp"
    before = (_metric(FAILURES, check), _metric(RETRIES, check))
    body = {"clusterName": "poll-gke", "targetProjectId": "acme-poll-1", "targetProjectNumber": "555666777888"}
    account = (await api.post("/v1/cloud-accounts/gcp", json=body, headers=org.headers())).json()["data"]
    handle = temporal_client.get_workflow_handle(account["id"])
    deadline = time.monotonic() + 30
    while True:  # the check has polled (and found nothing) a few times
        pending = (await handle.describe()).raw_description.pending_activities
        if pending and pending[0].attempt >= 3:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert _metric(FAILURES, check) == before[0] and _metric(RETRIES, check) == before[1]

    await connect_gcp(api, org, gke, "poll-gke", "acme-poll-1", account=account)
    assert (_metric(FAILURES, check), _metric(RETRIES, check)) == before
