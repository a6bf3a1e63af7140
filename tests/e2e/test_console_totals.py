"""The operator console shows an estimated total as an estimate (issue 21): with the bound
(`CLUSTERFLOW_EXACT_TOTAL_LIMIT`) at 40, the operations list says "~N operations" for 100 and the
exact number for a filter under the bound. A real browser (Chromium via Playwright, as
`test_console.py`) against the real app and PostgreSQL; the history is inserted as a fixture.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from playwright.async_api import async_playwright, expect

from clusterflow.ids import operation_id
from clusterflow.settings import Settings
from tests.conftest import Org
from tests.e2e.test_console import CHROMIUM, CHROMIUM_ARGS
from tests.live import LiveApi, live_api

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"), reason="no /usr/bin/chromium: `make browser` installs it"
    ),
    pytest.mark.parametrize("settings", [{"exact_total_limit": 40}], indirect=True),
]


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveApi]:
    async with live_api(settings) as server:
        yield server


async def _history(pool: asyncpg.Pool, org: Org, count: int, status: str) -> None:
    now = datetime.now(UTC)
    await pool.executemany(
        """INSERT INTO operations (id, organization_id, operation_type, status, workflow_type, workflow_input,
               created_at, started_at, last_update, completed_at)
           VALUES ($1, $2, 'CLUSTER_UPDATE', $3, 'test', '{}', $4, $4, $4, $4)""",
        [(operation_id(), org.id, status, now) for _ in range(count)],
    )


async def test_the_operations_list_shows_an_estimated_total_as_one(live: LiveApi, org: Org, pool: asyncpg.Pool) -> None:
    await _history(pool, org, 70, "SUCCEEDED")
    await _history(pool, org, 30, "FAILED")
    await pool.execute("ANALYZE operations")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{live.url}/console")
            await page.get_by_label("API key").fill(org.owner_key)
            await page.get_by_role("button", name="Sign in").click()
            await page.goto(f"{live.url}/console/#/operations")
            total = page.locator("p.muted[aria-live]")
            await expect(total).to_have_text(re.compile(r"^~[0-9,]+ operations"))
            await page.get_by_label("Status").select_option("FAILED")
            await expect(total).to_have_text(re.compile(r"^30 operations"))
            assert not errors
        finally:
            await browser.close()
