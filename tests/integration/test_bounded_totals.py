"""Totals exact up to a bound and estimated beyond it, and positional audit pages kept within it
(issue 21): through the public HTTP API against real PostgreSQL, with the bound
(`CLUSTERFLOW_EXACT_TOTAL_LIMIT`) set to 40 so a few hundred rows cross it.

History is written by plain INSERTs and the records repository, as fixtures for volume only; every
figure a test checks is read through the API and compared with a direct `count(*)`. The
estimate comes from the planner's statistics, which autovacuum keeps current in production;
the tests run ANALYZE to make them current at once.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from clusterflow.devstack.postgres import free_port
from clusterflow.ids import operation_id
from clusterflow.records import audit
from clusterflow.records.audit import AuditEvent
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from tests.conftest import Org
from tests.helpers import deploy_document
from tests.processes import settings_env, spawn, stop, wait_http

BOUND = 40
pytestmark = pytest.mark.parametrize(
    "settings", [{"exact_total_limit": BOUND, "positional_page_window": BOUND}], indirect=True
)

BASE = datetime(2026, 5, 1, tzinfo=UTC)


async def _copy_operations(
    pool: asyncpg.Pool, org: Org, count: int, status: str, cluster_id: str | None = None
) -> None:
    """`count` finished operations, as history: terminal, so nothing ever picks them up."""
    now = datetime.now(UTC)
    rows = [
        (operation_id(), org.id, cluster_id, "CLUSTER_UPDATE", status, "test", {}, now, now, now, now)
        for _ in range(count)
    ]
    await pool.executemany(
        """INSERT INTO operations (id, organization_id, cluster_id, operation_type, status, workflow_type,
               workflow_input, created_at, started_at, last_update, completed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        rows,
    )


def _event(org_id: str, when: datetime, event_type: str = "CLUSTER") -> AuditEvent:
    return AuditEvent(
        organization_id=org_id,
        event_type=event_type,
        action="UPDATE",
        resource="/v1/clusters/{clusterId}",
        resource_id=None,
        actor=None,
        actor_role="owner",
        request_id=None,
        ip_address=None,
        user_agent=None,
        success=True,
        status_code=200,
        details={"method": "PATCH", "path": "/v1/clusters/{clusterId}"},
        occurred_at=when,
    )


async def _get(api: httpx.AsyncClient, org: Org, path: str, **params: Any) -> dict[str, Any]:
    response = await api.get(path, params=params, headers=org.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _sane_estimate(value: int, real: int) -> None:
    assert value >= BOUND + 1
    assert real / 3 <= value <= real * 3, (value, real)


async def test_operation_totals_are_exact_up_to_the_bound_and_estimated_beyond(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await _copy_operations(pool, org, BOUND, "SUCCEEDED")
    at_bound = await _get(api, org, "/v1/operations", limit=5)
    assert at_bound["data"]["totalCount"] == BOUND and at_bound["data"]["totalCountExact"] is True
    assert at_bound["message"] == f"{BOUND} operations"

    await _copy_operations(pool, org, 70, "SUCCEEDED")
    await _copy_operations(pool, org, 25, "FAILED")
    await pool.execute("ANALYZE operations")
    real = await pool.fetchval("SELECT count(*) FROM operations WHERE organization_id = $1", org.id)
    assert real == BOUND + 95

    beyond = await _get(api, org, "/v1/operations", limit=5)
    assert beyond["data"]["totalCountExact"] is False
    _sane_estimate(beyond["data"]["totalCount"], real)
    assert beyond["message"] == f"about {beyond['data']['totalCount']:,} operations"

    # The filter decides exactness: 25 FAILED are under the bound, 110 SUCCEEDED are not.
    failed = await _get(api, org, "/v1/operations", status="FAILED", limit=5)
    assert failed["data"]["totalCountExact"] is True
    assert (
        failed["data"]["totalCount"]
        == 25
        == await pool.fetchval(
            "SELECT count(*) FROM operations WHERE organization_id = $1 AND status = 'FAILED'", org.id
        )
    )
    succeeded = await _get(api, org, "/v1/operations", status="SUCCEEDED", limit=5)
    assert succeeded["data"]["totalCountExact"] is False and succeeded["data"]["totalCount"] >= BOUND + 1

    # An estimate bounds nothing a client reads: one page holds every operation, and it is the last.
    everything = await _get(api, org, "/v1/operations", limit=500)
    assert len(everything["data"]["operations"]) == real and everything["data"]["nextPageToken"] is None

    other = await create_organization(pool, "totals-other")
    _, key = await create_api_key(pool, other, "owner", "owner")
    foreign = await api.get("/v1/operations", headers=org.headers(key))
    assert foreign.json()["data"]["totalCount"] == 0 and foreign.json()["data"]["totalCountExact"] is True


async def test_a_clusters_history_total_is_estimated_beyond_the_bound(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    # Deployed through the API (no worker: its operation stays PENDING), then given a long history.
    accepted = await api.post("/v1/clusters", json=deploy_document("long-history"), headers=org.headers())
    assert accepted.status_code == 202, accepted.text
    cluster_id = accepted.json()["data"]["clusterId"]
    await _copy_operations(pool, org, BOUND - 1, "SUCCEEDED", cluster_id)
    path = f"/v1/clusters/{cluster_id}/operations"
    at_bound = await _get(api, org, path, limit=5)
    assert at_bound["data"]["totalCount"] == BOUND and at_bound["data"]["totalCountExact"] is True

    await _copy_operations(pool, org, 80, "SUCCEEDED", cluster_id)
    await pool.execute("ANALYZE operations")
    real = await pool.fetchval("SELECT count(*) FROM operations WHERE cluster_id = $1", cluster_id)
    beyond = await _get(api, org, path, limit=5)
    assert beyond["data"]["totalCountExact"] is False
    _sane_estimate(beyond["data"]["totalCount"], real)
    assert beyond["message"].startswith("about ")


async def test_audit_totals_are_exact_up_to_the_bound_and_estimated_beyond(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await audit.record_many(pool, [_event(org.id, BASE + timedelta(seconds=i)) for i in range(30)])
    exact = await _get(api, org, "/v1/audit/events", pageSize=20)
    pagination = exact["data"]["pagination"]
    assert pagination["totalItems"] == 30 and pagination["totalItemsExact"] is True
    assert pagination["totalPages"] == 2 and pagination["hasNext"] is True
    assert exact["message"] == "30 audit events"

    await audit.record_many(
        pool, [_event(org.id, BASE + timedelta(minutes=1, seconds=i), "OPERATION") for i in range(90)]
    )
    await pool.execute("ANALYZE audit_events")
    real = await pool.fetchval("SELECT count(*) FROM audit_events WHERE organization_id = $1", org.id)
    assert real == 120

    estimated = await _get(api, org, "/v1/audit/events", pageSize=100)
    pagination = estimated["data"]["pagination"]
    assert pagination["totalItemsExact"] is False
    _sane_estimate(pagination["totalItems"], real)
    assert pagination["totalPages"] == math.ceil(pagination["totalItems"] / 100)
    assert estimated["message"] == f"about {pagination['totalItems']:,} audit events"
    assert pagination["hasNext"] is True and len(estimated["data"]["events"]) == 100

    # hasNext comes from the rows read, not the estimate: the page after the last row says no more.
    last = await _get(api, org, "/v1/audit/events", pageSize=100, pageToken=pagination["nextPageToken"])
    assert len(last["data"]["events"]) == 20
    assert last["data"]["pagination"]["hasNext"] is False and last["data"]["pagination"]["nextPageToken"] is None

    # The filter decides exactness: 30 CLUSTER events are under the bound, 90 OPERATION are not.
    cluster = (await _get(api, org, "/v1/audit/events", eventType="CLUSTER"))["data"]["pagination"]
    assert cluster["totalItems"] == 30 and cluster["totalItemsExact"] is True
    operation = (await _get(api, org, "/v1/audit/events", eventType="OPERATION"))["data"]["pagination"]
    assert operation["totalItemsExact"] is False and operation["totalItems"] >= BOUND + 1


async def test_a_positional_page_beyond_the_window_is_a_400_naming_page_and_changes_nothing(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await audit.record_many(pool, [_event(org.id, BASE + timedelta(seconds=i)) for i in range(60)])
    deepest = await _get(api, org, "/v1/audit/events", pageSize=10, page=BOUND // 10)
    assert len(deepest["data"]["events"]) == 10

    before = await pool.fetchval("SELECT count(*) FROM audit_events WHERE organization_id = $1", org.id)
    for page, size in ((BOUND // 10 + 1, 10), (2, BOUND), (3, 25), (100_000, 1)):
        response = await api.get("/v1/audit/events", params={"page": page, "pageSize": size}, headers=org.headers())
        assert response.status_code == 400, (page, size, response.text)
        body = response.json()
        assert body["error"]["code"] == "PAGE_TOO_DEEP" and body["error"]["details"]["field"] == "page"
        assert body["message"].startswith("page:")
        assert f"first {BOUND} events" in body["message"] and "pageToken" in body["message"]
    assert await pool.fetchval("SELECT count(*) FROM audit_events WHERE organization_id = $1", org.id) == before

    # Beyond the window, the token goes on: a page's token continues wherever `page` could not.
    token = deepest["data"]["pagination"]["nextPageToken"]
    further = await _get(api, org, "/v1/audit/events", pageSize=10, pageToken=token)
    assert len(further["data"]["events"]) == 10


async def test_pages_inside_the_window_are_the_rows_of_the_keyset_walk(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    # Three events share each instant, so the order's tie-break on the ID is exercised.
    await audit.record_many(
        pool,
        [
            _event(org.id, BASE + timedelta(minutes=i // 3), "CLUSTER" if i % 4 else "OPERATION")
            for i in range(2 * BOUND)
        ],
    )
    for params in ({}, {"eventType": "CLUSTER"}):
        by_page: list[str] = []
        for page in range(1, BOUND // 8 + 1):
            data = (await _get(api, org, "/v1/audit/events", pageSize=8, page=page, **params))["data"]
            by_page += [e["id"] for e in data["events"]]
        walked: list[str] = []
        token: str | None = None
        while len(walked) < BOUND:
            query = {"pageSize": 8, **params} | ({"pageToken": token} if token else {})
            data = (await _get(api, org, "/v1/audit/events", **query))["data"]
            walked += [e["id"] for e in data["events"]]
            token = data["pagination"]["nextPageToken"]
        assert by_page == walked[:BOUND] and len(set(by_page)) == BOUND, params
        expected = [
            r["id"]
            for r in await pool.fetch(
                """SELECT id FROM audit_events WHERE organization_id = $1 AND ($2::text IS NULL OR event_type = $2)
                    ORDER BY occurred_at DESC, id DESC LIMIT $3""",
                org.id,
                params.get("eventType"),
                BOUND,
            )
        ]
        assert by_page == expected


def _cli(url: str, org: Org, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERFLOW_", "DATABASE_URL", "TEMPORAL_"))}
    env.update(CLUSTERFLOW_URL=url, CLUSTERFLOW_API_KEY=org.owner_key, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "clusterflow.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_shows_an_estimated_total_as_one(
    org: Org, pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    await _copy_operations(pool, org, 30, "FAILED")
    await _copy_operations(pool, org, 70, "SUCCEEDED")
    await pool.execute("ANALYZE operations")
    api_settings = settings.model_copy(update={"api_port": free_port()})
    server = spawn("api", settings_env(api_settings, CLUSTERFLOW_EXACT_TOTAL_LIMIT=str(BOUND)), tmp_path / "api.log")
    url = f"http://127.0.0.1:{api_settings.api_port}"
    try:
        wait_http(f"{url}/healthz", server)
        exact = await asyncio.to_thread(_cli, url, org, "ops", "list", "--status", "FAILED", "--limit", "5")
        assert exact.returncode == 0, exact.stderr
        assert "30 operations" in exact.stdout and "~" not in exact.stdout
        estimated = await asyncio.to_thread(_cli, url, org, "ops", "list", "--limit", "5")
        assert estimated.returncode == 0, estimated.stderr
        assert re.search(r"~[0-9,]+ operations", estimated.stdout), estimated.stdout
        as_json = await asyncio.to_thread(_cli, url, org, "ops", "list", "--limit", "5", "-o", "json")
        assert json.loads(as_json.stdout)["totalCountExact"] is False
    finally:
        stop(server)
