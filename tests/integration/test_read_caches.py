"""The API's read caches stay true to the database, across API processes.

Two apps (two API processes' worth of state) share the database. A client polling one of them
must see every committed change to an operation, whether or not the change wrote an event, and
a key revoked through one must stop working on the other, also when the change was made in SQL
and when the LISTEN connection was lost while it happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from clusterflow.api.app import create_app
from clusterflow.records import operations
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from tests.conftest import Org
from tests.helpers import deploy_document


@asynccontextmanager
async def api_process(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterflow.test") as client:
            yield client, app


@pytest.fixture
async def two_apis(settings: Settings) -> AsyncIterator[tuple[tuple[httpx.AsyncClient, Any], ...]]:
    async with api_process(settings) as first, api_process(settings) as second:
        yield first, second


async def cached_operation(client: httpx.AsyncClient, org: Org, name: str) -> str:
    """Enqueue a deploy through `client` and read its record twice (the second from the cache)."""
    accepted = await client.post("/v1/clusters", json=deploy_document(name), headers=org.headers())
    assert accepted.status_code == 202, accepted.text
    op: str = accepted.json()["data"]["operationId"]
    for _ in range(2):
        assert (await client.get(f"/v1/operations/{op}", headers=org.headers())).status_code == 200
    return op


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_polled_operation_shows_every_committed_change(two_apis: Any, org: Org, pool: asyncpg.Pool) -> None:
    (a, _), (b, app_b) = two_apis
    accepted = await a.post("/v1/clusters", json=deploy_document("cache-poll"), headers=org.headers())
    assert accepted.status_code == 202, accepted.text
    op = accepted.json()["data"]["operationId"]

    async def message_on_b() -> str:
        response = await b.get(f"/v1/operations/{op}", headers=org.headers())
        assert response.status_code == 200
        return str(response.json()["data"]["message"])

    await message_on_b()
    await message_on_b()
    assert app_b.state.caches.operations.hits >= 1  # the second read came from the cache

    # A change that writes an event (as activities report progress).
    await operations.append_event(pool, op, "test/progress", "halfway there", phase="test")
    assert await eventually(lambda: _equals(message_on_b, "halfway there"))
    # A change that writes no event (as an abandoned start does).
    await pool.execute("UPDATE operations SET message = 'changed in SQL' WHERE id = $1", op)
    assert await eventually(lambda: _equals(message_on_b, "changed in SQL"))


async def test_a_change_while_the_listener_is_reconnecting_is_not_missed(
    two_apis: Any, org: Org, pool: asyncpg.Pool
) -> None:
    (a, app_a), _ = two_apis
    op = await cached_operation(a, org, "cache-reconnect")
    url = f"/v1/operations/{op}"
    listener = app_a.state.listener
    backend = listener._conn.get_server_pid()
    # Lose the LISTEN connection, then change the record before it is back: that notification
    # is gone, so only the reconnect's resync can make the change visible.
    await pool.execute("SELECT pg_terminate_backend($1)", backend)
    await pool.execute("UPDATE operations SET message = 'while away' WHERE id = $1", op)

    async def seen() -> bool:
        return bool((await a.get(url, headers=org.headers())).json()["data"]["message"] == "while away")

    assert await eventually(seen, 15)
    assert await eventually(lambda: _true(listener.listening), 15)


async def test_another_organization_never_gets_a_cached_operation(two_apis: Any, org: Org, pool: asyncpg.Pool) -> None:
    (a, _), _ = two_apis
    op = await cached_operation(a, org, "cache-scope")
    other_org = await create_organization(pool, "cache-other")
    _, other_key = await create_api_key(pool, other_org, "other", "owner")
    refused = await a.get(f"/v1/operations/{op}", headers={"Authorization": f"Bearer {other_key}"})
    assert refused.status_code == 404


@pytest.mark.parametrize("how", ["revoked through the other API", "revoked in SQL", "deleted in SQL"])
async def test_a_key_revoked_anywhere_stops_working_everywhere(
    two_apis: Any, org: Org, pool: asyncpg.Pool, how: str
) -> None:
    (a, _), (b, app_b) = two_apis
    key_id, key = await create_api_key(pool, org.id, "short-lived", "viewer")
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(2):
        assert (await b.get("/v1/clusters", headers=headers)).status_code == 200
    assert app_b.state.caches.keys.hits >= 1

    if how == "revoked through the other API":
        revoked = await a.post(f"/v1/api-keys/{key_id}/revoke", json={"reason": "test"}, headers=org.headers())
        assert revoked.status_code == 200
    elif how == "revoked in SQL":
        await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
    else:
        await pool.execute("DELETE FROM api_keys WHERE id = $1", key_id)

    async def refused() -> bool:
        return (await b.get("/v1/clusters", headers=headers)).status_code == 401

    assert await eventually(refused)
    assert (await a.get("/v1/clusters", headers=headers)).status_code == 401


async def test_a_key_revoked_through_an_api_stops_at_once_on_that_api(
    two_apis: Any, org: Org, pool: asyncpg.Pool
) -> None:
    (a, _), _ = two_apis
    key_id, key = await create_api_key(pool, org.id, "short-lived", "viewer")
    headers = {"Authorization": f"Bearer {key}"}
    assert (await a.get("/v1/clusters", headers=headers)).status_code == 200
    revoked = await a.post(f"/v1/api-keys/{key_id}/revoke", json={"reason": "test"}, headers=org.headers())
    assert revoked.status_code == 200
    assert (await a.get("/v1/clusters", headers=headers)).status_code == 401  # no wait


async def test_a_cached_key_stops_working_when_it_expires(two_apis: Any, org: Org, pool: asyncpg.Pool) -> None:
    (a, _), _ = two_apis
    key_id, key = await create_api_key(pool, org.id, "expiring", "viewer")
    headers = {"Authorization": f"Bearer {key}"}
    await pool.execute("UPDATE api_keys SET expires_at = now() + interval '1 second' WHERE id = $1", key_id)
    assert await eventually(lambda: _status(a, headers, 200))  # cached after the expiry was set
    await asyncio.sleep(1.2)
    assert (await a.get("/v1/clusters", headers=headers)).status_code == 401


async def _equals(read: Callable[[], Awaitable[str]], expected: str) -> bool:
    return await read() == expected


async def _true(value: bool) -> bool:
    return value


async def _status(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> bool:
    return (await client.get("/v1/clusters", headers=headers)).status_code == status


async def test_a_write_answered_by_a_process_empties_its_operation_cache(
    two_apis: Any, org: Org, pool: asyncpg.Pool
) -> None:
    # The write's own change may still be on its way as a notification: the client's next read
    # must not be answered from before it.
    (a, app_a), _ = two_apis
    op = await cached_operation(a, org, "cache-fence")
    assert app_a.state.caches.operations.get(op) is not None
    refused = await a.post("/v1/api-keys", json={"name": "fence"}, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert app_a.state.caches.operations.get(op) is not None  # a refused request changed nothing
    created = await a.post("/v1/api-keys", json={"name": "fence", "role": "viewer"}, headers=org.headers())
    assert created.status_code == 201
    assert app_a.state.caches.operations.get(op) is None


@pytest.mark.parametrize("how", ["through the other API", "in SQL"])
async def test_an_approval_policy_changed_anywhere_applies_to_the_next_deploy_everywhere(
    two_apis: Any, org: Org, pool: asyncpg.Pool, how: str
) -> None:
    (a, _), (b, app_b) = two_apis
    first = await b.post("/v1/clusters", json=deploy_document("policy-before"), headers=org.headers())
    assert first.status_code == 202 and first.json()["data"]["approvalRequired"] is False
    assert app_b.state.caches.approval_policies.get(org.id) is not None  # b now holds the policy

    if how == "through the other API":
        changed = await a.put(
            f"/v1/organizations/{org.id}/approval-policy", json={"clusterDeploy": True}, headers=org.headers()
        )
        assert changed.status_code == 200
    else:
        await pool.execute(
            """UPDATE organizations SET approval_policy = approval_policy || '{"clusterDeploy": true}'
                WHERE id = $1""",
            org.id,
        )

    async def dropped() -> bool:
        return app_b.state.caches.approval_policies.get(org.id) is None

    assert await eventually(dropped)
    second = await b.post("/v1/clusters", json=deploy_document("policy-after"), headers=org.headers())
    assert second.status_code == 202 and second.json()["data"]["approvalRequired"] is True


async def test_an_approval_policy_changed_through_an_api_applies_at_once_on_that_api(two_apis: Any, org: Org) -> None:
    (a, _), _ = two_apis
    first = await a.post("/v1/clusters", json=deploy_document("policy-here-1"), headers=org.headers())
    assert first.json()["data"]["approvalRequired"] is False
    changed = await a.put(
        f"/v1/organizations/{org.id}/approval-policy", json={"clusterDeploy": True}, headers=org.headers()
    )
    assert changed.status_code == 200
    second = await a.post("/v1/clusters", json=deploy_document("policy-here-2"), headers=org.headers())
    assert second.json()["data"]["approvalRequired"] is True  # no wait
