"""Live event streams (SSE and WebSocket) over a real uvicorn server, real worker and PostgreSQL.

What a client depends on: every event of an operation arrives, in order, exactly once, also
across reconnects; many clients do not starve each other; a client that leaves leaves nothing
behind; auth and organization scoping hold as on every other route.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import operations
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from tests.conftest import Org
from tests.helpers import all_events, deploy_document
from tests.live import LiveApi, SseEvent, live_api, sse_events, sse_headers


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveApi]:
    async with live_api(settings) as api:
        yield api


async def _deploy(client: httpx.AsyncClient, org: Org, name: str, **local: Any) -> dict[str, Any]:
    response = await client.post("/v1/clusters", json=deploy_document(name, **local), headers=org.headers())
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()["data"]
    return accepted


async def _collect_sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], *, stop_after: int | None = None, **params: Any
) -> tuple[list[SseEvent], list[str]]:
    events: list[SseEvent] = []
    other: list[str] = []
    async with client.stream("GET", url, headers=headers, params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for item in sse_events(response):
            if isinstance(item, str):
                other.append(item)
                continue
            events.append(item)
            if stop_after is not None and len(events) >= stop_after:
                break  # leaving the block drops the connection mid-stream
    return events, other


def _as_records(events: list[SseEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events]


@pytest.mark.usefixtures("worker")
async def test_sse_follows_a_whole_deploy_in_order(live: LiveApi, org: Org) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        accepted = await _deploy(client, org, "sse-1", phaseSeconds=0.1)
        url = f"/v1/operations/{accepted['operationId']}/events"
        events, other = await _collect_sse(client, url, sse_headers(org.headers()), follow="true")
        stored = await all_events(client, org.headers(), accepted["operationId"])

    assert other[0].startswith("retry: ")
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.id for e in events] == [e.data["sequence"] for e in events]
    assert [e.event for e in events] == [e.data["kind"] for e in events]
    assert _as_records(events) == stored  # the same documents as the JSON pages, nothing more
    assert events[-1].event == "status"
    assert events[-1].data["labels"]["status"] == "SUCCEEDED"
    phases = [e.data["phase"] for e in events if e.event == "phase" and e.data["message"].endswith("started")]
    assert phases == ["VALIDATE", "NETWORK", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"]


@pytest.mark.usefixtures("worker")
async def test_sse_cut_mid_stream_and_resumed_with_last_event_id_gets_every_event_once(live: LiveApi, org: Org) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        accepted = await _deploy(client, org, "sse-resume", phaseSeconds=0.15)
        url = f"/v1/operations/{accepted['operationId']}/events"
        received: list[SseEvent] = []
        # Three cuts at different points, then follow to the end; `?cursor=0` stays in the URL as a
        # browser's EventSource keeps it, and Last-Event-ID wins.
        for stop_after in (3, 5, 7, None):
            last = received[-1].id if received else None
            events, _ = await _collect_sse(
                client, url, sse_headers(org.headers(), last), stop_after=stop_after, follow="true", cursor=0
            )
            received += events
        stored = await all_events(client, org.headers(), accepted["operationId"])

    assert [e.id for e in received] == list(range(1, len(stored) + 1))
    assert _as_records(received) == stored
    assert received[-1].data["labels"]["status"] == "SUCCEEDED"


@pytest.mark.usefixtures("worker")
async def test_websocket_follows_a_deploy_and_resumes_after_a_cut(live: LiveApi, org: Org) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        accepted = await _deploy(client, org, "ws-1", phaseSeconds=0.15)
        ws_url = f"{live.ws_url}/v1/clusters/{accepted['clusterId']}/progress/stream"

        received: list[dict[str, Any]] = []
        async with websockets.connect(ws_url, additional_headers=org.headers()) as ws:
            while len(received) < 4:
                message = json.loads(await ws.recv())
                if message["type"] == "event":
                    assert message["id"] == message["data"]["sequence"]
                    received.append(message["data"])
        await _until(lambda: live.app.state.hub.subscriber_count == 0)  # the cut left nothing behind
        # Resume with Last-Event-ID on the upgrade request; the key in a first message this time.
        headers = {"Last-Event-ID": str(received[-1]["sequence"])}
        async with websockets.connect(ws_url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "auth", "apiKey": org.owner_key}))
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "event":
                    received.append(message["data"])
                elif message["type"] == "end":
                    assert message["operationId"] == accepted["operationId"]
            assert ws.close_code == 1000
        stored = await all_events(client, org.headers(), accepted["operationId"])

    assert [e["sequence"] for e in received] == list(range(1, len(stored) + 1))
    assert received == stored
    assert received[-1]["labels"]["status"] == "SUCCEEDED"


@pytest.mark.usefixtures("worker")
async def test_200_concurrent_stream_clients_all_receive_every_event(live: LiveApi, org: Org) -> None:
    clients = 200
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=live.url, timeout=60, limits=limits) as client:
        accepted = await _deploy(client, org, "fanout", phaseSeconds=0.3)
        url = f"/v1/operations/{accepted['operationId']}/events"
        results = await asyncio.gather(
            *(_collect_sse(client, url, sse_headers(org.headers()), follow="true") for _ in range(clients))
        )
        stored = await all_events(client, org.headers(), accepted["operationId"])

    assert stored[-1]["labels"]["status"] == "SUCCEEDED"
    for events, _ in results:
        assert _as_records(events) == stored
    assert live.app.state.hub.subscriber_count == 0


async def _pending_operation(pool: asyncpg.Pool, org: Org) -> str:
    """An operation with no workflow: the test writes its events itself."""
    operation_id = new_operation_id()
    async with pool.acquire() as conn:
        await operations.insert(
            conn,
            operation_id=operation_id,
            organization_id=org.id,
            cluster_id=None,
            cluster_name=None,
            operation_type="CLUSTER_DEPLOY",
            requested_by=None,
            idempotency_key=None,
            workflow_type="test",
            workflow_input={},
        )
    return operation_id


async def _next_event(stream: AsyncIterator[SseEvent | str]) -> SseEvent:
    while True:
        item = await anext(stream)
        if isinstance(item, SseEvent):
            return item


async def _until(condition: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def test_a_client_that_leaves_leaves_no_subscriber_and_a_lost_listener_reconnects(
    live: LiveApi, org: Org, pool: asyncpg.Pool
) -> None:
    operation_id = await _pending_operation(pool, org)
    hub = live.app.state.hub
    url = f"/v1/operations/{operation_id}/events"
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        async with client.stream("GET", url, headers=sse_headers(org.headers()), params={"follow": "true"}) as resp:
            stream = sse_events(resp)
            assert str(await anext(stream)).startswith("retry:")
            await _until(lambda: hub.subscriber_count == 1)
            await operations.append_event(pool, operation_id, "e1", "first")
            first = await _next_event(stream)
            assert first.data["message"] == "first"

            # The LISTEN connection dies (failover, idle kill): the listener reconnects and the
            # stream re-reads the table, so an event written meanwhile is not lost.
            listener = live.app.state.listener
            await pool.execute("SELECT pg_terminate_backend($1)", listener._conn.get_server_pid())
            await operations.append_event(pool, operation_id, "e2", "while the listener was down")
            await _until(lambda: listener.connected.is_set() and listener._conn is not None)
            await operations.append_event(pool, operation_id, "e3", "after")
            rest = [await _next_event(stream), await _next_event(stream)]
            assert [e.data["message"] for e in rest] == [
                "while the listener was down",
                "after",
            ]
            await stream.aclose()
        # The operation never ends; the client went away while it was quiet.
        await _until(lambda: hub.subscriber_count == 0 and not hub.topics)


async def test_a_stalled_client_holds_back_no_one_and_is_cleaned_up(
    live: LiveApi, org: Org, pool: asyncpg.Pool
) -> None:
    operation_id = await _pending_operation(pool, org)
    hub = live.app.state.hub
    path = f"/v1/operations/{operation_id}/events?follow=true"
    # A client that sends its request and then never reads, with a tiny receive buffer.
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setblocking(False)
    port = int(live.url.rsplit(":", 1)[1])
    await asyncio.get_running_loop().sock_connect(stalled, ("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {org.owner_key}\r\n"
    await asyncio.get_running_loop().sock_sendall(stalled, (request + "Accept: text/event-stream\r\n\r\n").encode())
    try:
        await _until(lambda: hub.subscriber_count == 1)
        big = "x" * 64_000  # 150 events of 64 kB: far more than the socket buffers hold
        async with (
            httpx.AsyncClient(base_url=live.url, timeout=30) as client,
            client.stream(
                "GET",
                f"/v1/operations/{operation_id}/events",
                headers=sse_headers(org.headers()),
                params={"follow": "true"},
            ) as resp,
        ):
            stream = sse_events(resp)
            for i in range(150):
                await operations.append_event(pool, operation_id, f"big-{i}", f"big {i}", raw_output=big)
            received = [await _next_event(stream) for _ in range(150)]
            await stream.aclose()
        assert [e.id for e in received] == list(range(1, 151))
        assert all(e.data["rawOutput"] == big for e in received)
    finally:
        stalled.close()
    # The stalled stream's producer was blocked in a write; the disconnect still ends it.
    await _until(lambda: hub.subscriber_count == 0)


async def test_streams_apply_auth_and_organization_scoping(
    live: LiveApi, org: Org, pool: asyncpg.Pool, settings: Settings
) -> None:
    operation_id = await _pending_operation(pool, org)
    other_org = await create_organization(pool, f"other-{uuid.uuid4().hex[:8]}")
    _, other_key = await create_api_key(pool, other_org, "other", "owner")
    other = {"Authorization": f"Bearer {other_key}"}
    url = f"/v1/operations/{operation_id}/events"
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        assert (await client.get(url, headers={"Accept": "text/event-stream"})).status_code == 401
        response = await client.get(url, headers=sse_headers(other))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
        bad = await client.get(url, headers={**sse_headers(org.headers()), "Last-Event-ID": "abc"})
        assert bad.status_code == 422
        assert bad.json()["error"]["details"][0]["field"] == "Last-Event-ID"

        # Without follow, the stream is the log so far and closes.
        await operations.append_event(pool, operation_id, "only", "only event")
        events, _ = await _collect_sse(client, url, sse_headers(org.headers()))
        assert [e.data["message"] for e in events] == ["only event"]

        accepted = await _deploy(client, org, "scoped", phaseSeconds=0.01)
        stream_url = f"/v1/clusters/{accepted['clusterId']}/progress/stream"
        assert (await client.get(stream_url, headers=sse_headers(other))).status_code == 404
        assert (await client.get(stream_url, headers=org.headers())).status_code == 406
        wrong_op = await client.get(
            stream_url, headers=sse_headers(org.headers()), params={"operationId": operation_id}
        )
        assert wrong_op.status_code == 404

    ws_url = f"{live.ws_url}/v1/clusters/{accepted['clusterId']}/progress/stream"
    for headers, close_code in (({}, 4401), (other, 4404), ({"X-API-Key": "cfk_not-a-key"}, 4401)):
        async with websockets.connect(ws_url, additional_headers=headers) as ws:
            if not headers:
                await ws.send(json.dumps({"type": "hello"}))
            message = json.loads(await ws.recv())
            assert message["type"] == "error"
            assert message["status"] == close_code - 4000
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == close_code
