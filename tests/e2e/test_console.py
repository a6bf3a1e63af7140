"""The operator console in a real browser: Debian's Chromium driven by Playwright.

The API runs under uvicorn on a free port in the test's event loop (streams need a real
server) with a real worker on the test's task queue; the browser loads `/console` from it and
uses only the public API and SSE streams, as an operator would. Playwright never downloads a
browser here: it launches `/usr/bin/chromium` (`make test` installs it from Debian if missing).
Each page is saved as a screenshot under `.clusterflow/artifacts/console/`.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from clusterflow.records.organizations import create_api_key
from clusterflow.settings import Settings
from tests.conftest import Org
from tests.helpers import deploy_document, wait_for_operation
from tests.live import LiveApi, live_api

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".clusterflow" / "artifacts" / "console"
PHASES = ["VALIDATE", "NETWORK", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"]

# Outside CI a machine without Chromium skips these; in CI (`make test` installs it) they must run.
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason="no /usr/bin/chromium: `make browser` installs it"
)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def live(settings: Settings, worker: None) -> AsyncIterator[LiveApi]:
    async with live_api(settings) as server:
        yield server


@pytest.fixture
async def client(live: LiveApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        yield client


@pytest.fixture
async def console(browser: Browser, live: LiveApi) -> AsyncIterator[Callable[[str], Awaitable[Page]]]:
    """Opens fresh browser contexts signed in through the form, as an operator does; closes
    them before the server stops, so no stream holds its graceful shutdown."""
    contexts: list[BrowserContext] = []

    async def open_console(key: str) -> Page:
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        contexts.append(context)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors  # type: ignore[attr-defined]
        await page.goto(f"{live.url}/console")
        await page.get_by_label("API key").fill(key)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        return page

    yield open_console
    for context in contexts:
        await context.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def deploy(client: httpx.AsyncClient, org: Org, name: str, **local: Any) -> dict[str, Any]:
    response = await client.post("/v1/clusters", json=deploy_document(name, **local), headers=org.headers())
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()["data"]
    return accepted


def bar(page: Page, operation_id: str) -> Any:
    return page.locator(f'tr[data-operation="{operation_id}"] [role="progressbar"]')


async def test_a_deploy_streams_into_the_list_and_its_bar_reaches_100(
    console: Callable[[str], Awaitable[Page]], live: LiveApi, client: httpx.AsyncClient, org: Org
) -> None:
    page = await console(org.owner_key)
    assert "cfk_" not in page.url
    accepted = await deploy(client, org, "console-1", phaseSeconds=0.5)
    operation_id = accepted["operationId"]
    await page.goto(f"{live.url}/console/#/operations")
    await expect(page.get_by_role("heading", name="Operations")).to_be_visible()
    # Record every value the bar shows, to see it fed by the stream and not only by list refreshes.
    await expect(bar(page, operation_id)).to_be_visible()
    await page.evaluate(
        """id => {
            window.seen = new Set();
            const el = document.querySelector(`tr[data-operation="${id}"] [role=progressbar]`);
            new MutationObserver(() => window.seen.add(el.getAttribute('aria-valuenow')))
                .observe(el, {attributes: true, attributeFilter: ['aria-valuenow']});
        }""",
        operation_id,
    )
    await expect(bar(page, operation_id)).to_have_attribute("aria-valuenow", "100", timeout=20_000)
    row = page.locator(f'tr[data-operation="{operation_id}"]')
    await expect(row.locator(".badge")).to_have_text("SUCCEEDED")
    seen = set(await page.evaluate("[...window.seen]"))
    assert len(seen - {"0", "100"}) >= 2, f"the bar moved only through {sorted(seen)}"
    await shot(page, "operations")

    # The cluster list and the cluster page show what the deploy made.
    await page.get_by_role("link", name="Clusters").click()
    cluster_row = page.locator('tr[data-cluster="console-1"]')
    await expect(cluster_row.locator(".badge")).to_have_text("ACTIVE")
    await expect(cluster_row).to_contain_text("local-1")
    await expect(cluster_row).to_contain_text("1.31")
    await shot(page, "clusters")
    await cluster_row.get_by_role("link", name="console-1").click()
    await expect(page.get_by_role("heading", name=re.compile("Cluster console-1"))).to_be_visible()
    await expect(page.locator("#node-groups")).to_contain_text("batch")
    await expect(page.locator("#node-groups")).to_contain_text("large")
    await expect(page.locator("pre")).to_contain_text('"clusterName": "console-1"')
    await expect(page.locator(f'tr[data-operation="{operation_id}"]')).to_be_visible()
    await shot(page, "cluster")

    # The operation page replays the whole event log through the stream.
    await page.locator(f'tr[data-operation="{operation_id}"]').get_by_role("link", name=operation_id).click()
    log = page.get_by_role("log", name="Event log")
    for phase in PHASES:
        await expect(log).to_contain_text(f"{phase} completed")
    sequences = [int(s) for s in await log.locator("li").evaluate_all("els => els.map(e => e.dataset.sequence)")]
    assert sequences == list(range(1, len(sequences) + 1))
    await expect(page.locator('[role="progressbar"]')).to_have_attribute("aria-valuenow", "100")
    await shot(page, "operation-succeeded")

    # A failed operation shows its error.
    failed = await deploy(client, org, "console-bad", phaseSeconds=0.05, failAt="NETWORK")
    await wait_for_operation(client, org.headers(), failed["operationId"])
    await page.goto(f"{live.url}/console/#/operations/{failed['operationId']}")
    await expect(page.locator("#error")).to_contain_text("SIMULATED_FAILURE")
    await expect(page.locator("#cancel-button")).to_be_disabled()
    await shot(page, "operation-failed")

    # Filters narrow the live list and live in the page's address (without the key).
    await page.get_by_role("link", name="Operations").click()
    await expect(page.locator("tbody tr")).to_have_count(2)
    await page.get_by_label("Status").select_option("FAILED")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator(f'tr[data-operation="{failed["operationId"]}"]')).to_be_visible()
    assert page.url.endswith("#/operations?status=FAILED")
    await page.get_by_label("Type").select_option("CLUSTER_DELETE")
    await expect(page.locator("tbody")).to_contain_text("No operations.")

    # A registered cluster's page shows its agent's registration status.
    registered = await client.post(
        "/v1/clusters/console-edge/register", json={"architecture": "arm64"}, headers=org.headers()
    )
    assert registered.status_code == 202, registered.text
    await page.get_by_role("link", name="Clusters").click()
    await page.locator('tr[data-cluster="console-edge"]').get_by_role("link", name="console-edge").click()
    await expect(page.locator("#registration")).to_contain_text("NEVER CONNECTED")
    await expect(page.locator("#registration")).to_contain_text("apply the agent manifest")
    await shot(page, "cluster-registered")
    assert not page.errors  # type: ignore[attr-defined]


async def test_an_owner_approves_an_editors_delete_from_the_cluster_page(
    console: Callable[[str], Awaitable[Page]], live: LiveApi, client: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    accepted = await deploy(client, org, "console-2")
    await wait_for_operation(client, org.headers(), accepted["operationId"])
    _, editor = await create_api_key(pool, org.id, "console editor", "editor")
    response = await client.delete(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers(editor))
    assert response.status_code == 202, response.text
    pending = response.json()["data"]
    assert pending["approvalRequired"] and "approvalToken" not in pending  # the editor gets no token
    delete_id = pending["operationId"]
    await wait_for_operation(client, org.headers(), delete_id, until={"AWAITING_APPROVAL"})

    page = await console(org.owner_key)
    await expect(page.locator("#approval-count")).to_have_text("1")
    await page.get_by_role("link", name=re.compile("Awaiting approval")).click()
    row = page.locator(f'tr[data-operation="{delete_id}"]')
    await expect(row.locator(".badge")).to_have_text("AWAITING APPROVAL")
    await shot(page, "approvals")
    await row.get_by_role("link", name="console-2").click()
    card = page.locator("#active-operation")
    await expect(card).to_contain_text("0 of 1 approval")
    await expect(card.get_by_role("button", name="Approve")).to_be_enabled()
    await card.get_by_label("Comment (optional)").fill("maintenance window, approved by on-call")
    await shot(page, "cluster-awaiting-approval")
    await card.get_by_role("button", name="Approve").click()
    await expect(page.locator("#card-feedback")).to_contain_text("now RUNNING")
    await expect(page.locator("#approval-count")).to_have_text("0")
    record = await wait_for_operation(client, org.headers(), delete_id)
    assert record["status"] == "SUCCEEDED", record
    assert [(r["decision"], r["comment"]) for r in record["approval"]["received"]] == [
        ("APPROVE", "maintenance window, approved by on-call")
    ]
    await expect(page.locator("h1 .badge")).to_have_text("DELETED", timeout=20_000)
    await shot(page, "cluster-approved")
    assert not page.errors  # type: ignore[attr-defined]


async def test_under_four_eyes_the_requester_cannot_decide_and_another_owner_approves_by_keyboard(
    console: Callable[[str], Awaitable[Page]], live: LiveApi, client: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    accepted = await deploy(client, org, "console-5")
    await wait_for_operation(client, org.headers(), accepted["operationId"])
    policy = await client.put(
        f"/v1/organizations/{org.id}/approval-policy", json={"requireDifferentApprover": True}, headers=org.headers()
    )
    assert policy.status_code == 200, policy.text
    _, second = await create_api_key(pool, org.id, "second owner", "owner")
    pending = (await client.delete(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers())).json()["data"]
    delete_id = pending["operationId"]
    await wait_for_operation(client, org.headers(), delete_id, until={"AWAITING_APPROVAL"})

    requester = await console(org.owner_key)
    await expect(requester.locator("#approval-count")).to_have_text("0")  # nothing this owner may decide
    await requester.goto(f"{live.url}/console/#/operations/{delete_id}")
    await expect(requester.locator("#approve-button")).to_be_disabled()
    await expect(requester.locator("#action-decide")).to_contain_text("requires a different approver")
    await shot(requester, "operation-four-eyes")

    page = await console(second)
    await expect(page.locator("#approval-count")).to_have_text("1")
    await page.goto(f"{live.url}/console/#/operations/{delete_id}")
    await expect(page.get_by_role("button", name="Approve")).to_be_enabled()
    await page.get_by_label(re.compile("Approval token")).fill("not-the-token")
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#action-feedback")).to_contain_text("INVALID_APPROVAL_TOKEN")
    await page.get_by_label(re.compile("Approval token")).fill("")
    await page.get_by_label("Comment (optional)").fill("second pair of eyes")
    # By keyboard: from the comment, Tab passes the token field and reaches Approve; Enter presses it.
    await page.get_by_label("Comment (optional)").focus()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Approve")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("h1 .badge")).to_have_text("SUCCEEDED", timeout=20_000)
    await expect(page.locator("#main")).to_contain_text("second pair of eyes")
    await expect(page.locator("#approval-count")).to_have_text("0")
    await shot(page, "operation-approved")
    assert not page.errors  # type: ignore[attr-defined]
    assert not requester.errors  # type: ignore[attr-defined]


@pytest.mark.parametrize("settings", [{"stream_retry_ms": 200}], indirect=True)
async def test_an_editor_cancels_a_running_deploy_after_confirming(
    console: Callable[[str], Awaitable[Page]], live: LiveApi, client: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    _, editor = await create_api_key(pool, org.id, "console editor", "editor")
    accepted = await deploy(client, org, "console-3", phaseSeconds=3)
    operation_id = accepted["operationId"]
    page = await console(editor)
    await page.goto(f"{live.url}/console/#/operations/{operation_id}")
    await expect(page.locator("h1 .badge")).to_have_text("RUNNING", timeout=15_000)
    await expect(page.locator("#force-button")).to_be_disabled()
    await expect(page.locator("#action-force")).to_contain_text("Needs the admin role; this key is editor.")
    await expect(page.locator("#approve-button")).to_be_disabled()

    # The API ends every stream (as on shutdown): the page reconnects with Last-Event-ID.
    hub = live.app.state.hub
    hub.close()
    await expect(page.locator(".conn")).to_have_text("reconnecting…")
    hub.closing = False
    await expect(page.locator(".conn")).to_have_text("● live")

    # Dismissing the confirmation changes nothing.
    await page.get_by_role("button", name="Cancel operation").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await shot(page, "cancel-confirm")
    await expect(dialog.get_by_role("button", name="Keep it running")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert (await client.get(f"/v1/operations/{operation_id}", headers=org.headers())).json()["data"]["status"] in (
        "RUNNING",
        "PENDING",
    )

    await page.get_by_role("button", name="Cancel operation").click()
    await dialog.get_by_role("button", name="Cancel operation").click()
    await expect(page.locator("h1 .badge")).to_have_text("CANCELLED", timeout=20_000)
    await expect(page.locator("#cancel-button")).to_be_disabled()
    await expect(page.get_by_role("log", name="Event log")).to_contain_text("cancel requested")
    await expect(page.locator("#main")).to_contain_text("Left behind: nothing")
    log = page.get_by_role("log", name="Event log")
    sequences = [int(s) for s in await log.locator("li").evaluate_all("els => els.map(e => e.dataset.sequence)")]
    assert sequences == list(range(1, len(sequences) + 1)), "an event was lost or repeated across the reconnect"
    await shot(page, "operation-cancelled")
    assert not page.errors  # type: ignore[attr-defined]


async def test_a_viewer_sees_every_action_disabled_with_its_reason(
    console: Callable[[str], Awaitable[Page]], live: LiveApi, client: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    _, viewer = await create_api_key(pool, org.id, "console viewer", "viewer")
    accepted = await deploy(client, org, "console-4", phaseSeconds=2)
    page = await console(viewer)
    await expect(page.locator("#who")).to_contain_text("viewer")
    await page.goto(f"{live.url}/console/#/operations/{accepted['operationId']}")
    await expect(page.get_by_role("heading", name=re.compile("cluster deploy"))).to_be_visible()
    actions = page.locator(".actions")
    await expect(actions.locator("button")).to_have_count(4)
    for button in await actions.locator("button, input, textarea").all():
        await expect(button).to_be_disabled()
    await expect(page.locator("#action-cancel")).to_contain_text("Needs the editor role; this key is viewer.")
    await expect(page.locator("#action-force")).to_contain_text("Needs the admin role; this key is viewer.")
    await expect(page.locator("#action-decide")).to_contain_text("Needs the owner role; this key is viewer.")
    await shot(page, "operation-viewer")
    # Signing out forgets the key: a reload asks for it again.
    await page.get_by_role("button", name="Sign out").click()
    assert await page.evaluate("sessionStorage.length") == 0
    await page.reload()
    await expect(page.get_by_label("API key")).to_be_visible()
    await page.get_by_label("API key").fill("cfk_not-a-real-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("That API key was refused")
    await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    await shot(page, "sign-in")
    await client.post(f"/v1/operations/{accepted['operationId']}/cancel", headers=org.headers())
    assert not page.errors  # type: ignore[attr-defined]
