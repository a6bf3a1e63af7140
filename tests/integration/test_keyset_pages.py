"""Keyset pages of the audit log (issue 21, item 3): a client following `nextPageToken` reads every
event exactly once, in order, while new events arrive and while retention retires the rows its
token points at; a token it did not get from this API is a 400 naming `pageToken`.

The log is seeded through the records module with chosen timestamps (several events share one, so
the order's tie-break on the ID is exercised) and read through the public HTTP API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from clusterflow.records import audit
from clusterflow.records.audit import AuditEvent
from clusterflow.records.organizations import create_api_key, create_organization
from tests.conftest import Org

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def _event(org_id: str, when: datetime, action: str = "UPDATE") -> AuditEvent:
    return AuditEvent(
        organization_id=org_id,
        event_type="CLUSTER",
        action=action,
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


async def _page(api: httpx.AsyncClient, org: Org, **params: Any) -> dict[str, Any]:
    response = await api.get("/v1/audit/events", params={"pageSize": 20, **params}, headers=org.headers())
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_following_tokens_reads_each_event_once_while_events_arrive_and_retire(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    # 90 events over 30 distinct instants: three share each timestamp.
    await audit.record_many(pool, [_event(org.id, BASE + timedelta(minutes=i // 3)) for i in range(90)])
    expected = [
        r["id"]
        for r in await pool.fetch(
            "SELECT id FROM audit_events WHERE organization_id = $1 ORDER BY occurred_at DESC, id DESC", org.id
        )
    ]
    assert len(expected) == 90

    seen: list[str] = []
    page = await _page(api, org)
    seen += [e["id"] for e in page["events"]]
    newer = retired = 0
    while page["pagination"]["nextPageToken"]:
        # Between pages: new events arrive at the head, and retention retires the oldest rows
        # read so far, including the very row the token continues after.
        await audit.record_many(pool, [_event(org.id, datetime.now(UTC), "CREATE") for _ in range(7)])
        newer += 7
        await pool.execute("DELETE FROM audit_events WHERE organization_id = $1 AND id = $2", org.id, seen[-1])
        retired += 1
        page = await _page(api, org, pageToken=page["pagination"]["nextPageToken"])
        assert page["pagination"]["hasNext"] == (page["pagination"]["nextPageToken"] is not None)
        seen += [e["id"] for e in page["events"]]

    assert seen == expected  # no gap, no duplicate, no newer event, the original order
    assert retired == 4 and page["pagination"]["totalItems"] == 90 + newer - retired


async def test_a_filter_keeps_its_tokens_and_another_org_reads_only_its_own(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await audit.record_many(
        pool, [_event(org.id, BASE + timedelta(seconds=i), "DELETE" if i % 2 else "UPDATE") for i in range(50)]
    )
    first = await _page(api, org, action="DELETE")
    token = first["pagination"]["nextPageToken"]
    second = await _page(api, org, action="DELETE", pageToken=token)
    ids = [e["id"] for e in first["events"] + second["events"]]
    assert len(ids) == len(set(ids)) == 25 and {e["action"] for e in first["events"] + second["events"]} == {"DELETE"}
    assert second["pagination"]["nextPageToken"] is None and not second["pagination"]["hasNext"]

    other = await create_organization(pool, "keyset-other")
    _, key = await create_api_key(pool, other, "owner", "owner")
    foreign = await api.get("/v1/audit/events", params={"pageToken": token}, headers=org.headers(key))
    assert foreign.status_code == 200 and foreign.json()["data"]["events"] == []


async def test_a_token_not_issued_by_the_api_is_a_400_naming_it(api: httpx.AsyncClient, org: Org) -> None:
    for token in (
        "not-a-token",
        "MjAyNi0wMy0wMVQwMDowMDowMCswMDowMHxhdWRfAA",
        "eWVzdGVyZGF5fGF1ZF8wMUFCQw",
        "fA",
        "x" * 301,
    ):
        response = await api.get("/v1/audit/events", params={"pageToken": token}, headers=org.headers())
        assert response.status_code in (400, 422), (token, response.text)
        assert "pageToken" in response.text, response.text
