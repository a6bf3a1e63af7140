"""Access control a security reviewer signs off on.

The authorization matrix walks every route of the app (so routes added later are covered
without editing this file) and calls each with: no key, a malformed key, an unknown key, a
revoked key, an expired key, every role, and another organization's owner key.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute
from temporalio.client import Client

from clusterflow.api.app import create_app
from clusterflow.records.organizations import ROLES, create_api_key, create_organization, generate_key
from clusterflow.settings import Settings
from tests.conftest import Org
from tests.helpers import deploy_document, history_text, wait_for_operation

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Authenticated by something other than an API key, each tested where it is built: the Azure
# setup script's per-account token, the unsubscribe link's MAC, and the OIDC discovery
# documents the clouds fetch (public by design).
OWN_AUTH = {
    "/v1/cloud-accounts/azure/{id}/callback",
    "/v1/notifications/unsubscribe",
    "/.well-known/openid-configuration",
    "/.well-known/jwks.json",
}


def _required_role(dependant: Any) -> str | None:
    for dependency in dependant.dependencies:
        role = getattr(dependency.call, "required_role", None) or _required_role(dependency)
        if role:
            return str(role)
    return None


def api_routes(routes: Any) -> list[APIRoute]:
    """Every APIRoute, looking inside included routers."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


def protected_routes(app: Any) -> list[tuple[str, str, str]]:
    routes = []
    for route in api_routes(app.routes):
        if route.path in PUBLIC or route.path in OWN_AUTH:
            continue
        role = _required_role(route.dependant)
        assert role, f"{route.path} declares no role: every route must"
        routes.extend((method, route.path, role) for method in sorted(route.methods))
    return routes


@pytest.fixture
async def estate(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> dict[str, str]:
    """Real resources of the organization, to fill every kind of path parameter."""
    accepted = (await api.post("/v1/clusters", json=deploy_document("estate"), headers=org.headers())).json()["data"]
    await wait_for_operation(api, org.headers(), accepted["operationId"])
    victim_id, _ = await create_api_key(pool, org.id, "victim", "viewer")
    member = await pool.fetchval(
        "INSERT INTO members (id, organization_id, email, role) VALUES ('mem_estate', $1, 'x@example.com', 'viewer')"
        " RETURNING id",
        org.id,
    )
    # Read through the API: it waits for this process's queued audit events (api/audit_log.py).
    events = await api.get("/v1/audit/events", params={"pageSize": 1}, headers=org.headers())
    event = events.json()["data"]["events"][0]["id"]
    return {
        "clusterId": accepted["clusterId"],
        "operationId": accepted["operationId"],
        "clusterName": "estate",
        "orgId": org.id,
        "keyId": victim_id,
        "memberId": member,
        "eventId": event or "aud_none",
        "channel": "webhook",
        "topic": "operation.succeeded",
    }


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path.replace("{", "unknown-").replace("}", "")


async def _keys(pool: asyncpg.Pool, org: Org) -> dict[str, str]:
    keys = {}
    for role in ROLES:
        keys[role] = (await create_api_key(pool, org.id, f"matrix-{role}", role))[1]
    revoked_id, keys["revoked"] = await create_api_key(pool, org.id, "revoked", "owner")
    await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", revoked_id)
    _, keys["expired"] = await create_api_key(
        pool, org.id, "expired", "owner", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    other = await create_organization(pool, "matrix-other")
    keys["other"] = (await create_api_key(pool, other, "other owner", "owner"))[1]
    return keys


@pytest.mark.usefixtures("worker")
async def test_every_route_answers_each_kind_of_caller_as_expected(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, settings: Settings, estate: dict[str, str]
) -> None:
    keys = await _keys(pool, org)
    app = create_app(settings)
    routes = protected_routes(app)
    assert len(routes) > 25
    failures = []
    for method, template, role in routes:
        path = _fill(template, estate)

        async def call(headers: dict[str, str], path: str = path, method: str = method) -> httpx.Response:
            return await api.request(
                method, path, headers=headers, json={} if method in ("POST", "PUT", "PATCH") else None
            )

        for label, headers in [
            ("no key", {}),
            ("malformed key", {"Authorization": "Bearer not-a-key"}),
            ("unknown key", {"Authorization": f"Bearer {generate_key()}"}),
            ("revoked key", {"Authorization": f"Bearer {keys['revoked']}"}),
            ("expired key", {"X-API-Key": keys["expired"]}),
        ]:
            response = await call(headers)
            if response.status_code != 401 or response.json()["error"]["code"] != "UNAUTHORIZED":
                failures.append(f"{method} {template} with {label}: {response.status_code}")
        for candidate in ROLES:
            response = await call({"Authorization": f"Bearer {keys[candidate]}"})
            allowed = ROLES.index(candidate) >= ROLES.index(role)
            if (allowed and response.status_code in (401, 403)) or response.status_code >= 500:
                failures.append(f"{method} {template} as {candidate}: {response.status_code} {response.text[:200]}")
            if not allowed and response.status_code != 403:
                failures.append(f"{method} {template} as {candidate} (needs {role}): {response.status_code}")
        if "{" in template:
            response = await call({"Authorization": f"Bearer {keys['other']}"})
            expected = {404} if method == "GET" else {404, 422}
            if response.status_code not in expected:
                failures.append(f"{method} {template} from another organization: {response.status_code}")
    assert not failures, "\n".join(failures)


async def test_keys_are_shown_once_masked_after_and_revocation_takes_effect(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    created = await api.post(
        "/v1/api-keys", json={"name": "ci", "role": "editor", "duration": "24h"}, headers=org.headers()
    )
    assert created.status_code == 201, created.text
    key = created.json()["data"]
    secret = key["key"]
    assert secret.startswith("cfk_") and key["status"] == "ACTIVE" and key["expiresAt"]
    assert secret not in json.dumps((await api.get("/v1/api-keys", headers=org.headers())).json())
    listed = {k["id"]: k for k in (await api.get("/v1/api-keys", headers=org.headers())).json()["data"]}
    assert listed[key["id"]]["maskedKey"].startswith(secret[:12]) and "*" in listed[key["id"]]["maskedKey"]
    stored = await pool.fetchrow("SELECT key_hash, key_prefix FROM api_keys WHERE id = $1", key["id"])
    assert secret.encode() not in bytes(stored["key_hash"])

    assert (await api.get("/v1/clusters", headers={"X-API-Key": secret})).status_code == 200
    revoke = await api.post(
        f"/v1/api-keys/{key['id']}/revoke", json={"reason": "leaked in a CI log"}, headers=org.headers()
    )
    assert revoke.status_code == 200
    assert revoke.json()["data"]["status"] == "REVOKED"
    assert revoke.json()["data"]["revokedReason"] == "leaked in a CI log"
    assert (await api.get("/v1/clusters", headers={"X-API-Key": secret})).status_code == 401
    status = (await api.get(f"/v1/api-keys/{key['id']}/status", headers=org.headers())).json()["data"]
    assert status["status"] == "REVOKED" and status["revokedBy"]
    stats = (await api.get("/v1/api-keys/stats", headers=org.headers())).json()["data"]
    assert stats["revokedKeyCount"] == 1 and stats["activeKeyCount"] >= 1
    assert (await api.post(f"/v1/api-keys/{key['id']}/revoke", json={}, headers=org.headers())).status_code == 409
    assert (await api.delete(f"/v1/api-keys/{key['id']}", headers=org.headers())).status_code == 200
    assert (await api.get(f"/v1/api-keys/{key['id']}", headers=org.headers())).status_code == 404


async def test_a_key_cannot_create_a_stronger_key(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    _, admin = await create_api_key(pool, org.id, "admin", "admin")
    refused = await api.post("/v1/api-keys", json={"name": "x", "role": "owner"}, headers=org.headers(admin))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ROLE_ABOVE_CREATOR"
    ok = await api.post(
        "/v1/api-keys", json={"name": "x", "role": "admin", "isPermanent": True}, headers=org.headers(admin)
    )
    assert ok.status_code == 201 and ok.json()["data"]["isPermanent"] is True
    bad = await api.post("/v1/api-keys", json={"name": "x", "duration": "forever"}, headers=org.headers())
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "duration"


@pytest.mark.parametrize("settings", [{"instance_heartbeat_seconds": 0.5}], indirect=True)
async def test_last_used_is_tracked_without_a_write_per_request(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    """Uses are flushed with the instance heartbeat: the key's row is written once per flush
    that has uses to write, however many requests came in between (counted by a trigger)."""
    key_id, secret = await create_api_key(pool, org.id, "tracked", "viewer")
    suffix = key_id.lower().replace("-", "_")
    table, function = f"key_writes_{suffix}", f"count_key_writes_{suffix}"
    await pool.execute(f"CREATE TABLE {table} (at timestamptz NOT NULL DEFAULT clock_timestamp())")
    await pool.execute(
        f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO {table} DEFAULT VALUES; RETURN NEW; END $$"""
    )
    await pool.execute(
        f"""CREATE TRIGGER {function} AFTER UPDATE OF last_used_at ON api_keys FOR EACH ROW
            WHEN (NEW.id = '{key_id}') EXECUTE FUNCTION {function}()"""
    )
    try:
        requests = 40
        started = time.monotonic()
        for _ in range(requests):
            assert (await api.get("/v1/clusters", headers={"X-API-Key": secret})).status_code == 200
        elapsed = time.monotonic() - started
        for _ in range(120):
            if await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key_id):
                break
            await asyncio.sleep(0.05)
        assert await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key_id) is not None
        await asyncio.sleep(1.0)  # past the next flush: nothing more to write
        writes = await pool.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - named by this test
        assert 1 <= writes <= elapsed / 0.5 + 2 and writes < requests, (writes, elapsed)
    finally:
        await pool.execute(f"DROP TRIGGER {function} ON api_keys")
        await pool.execute(f"DROP FUNCTION {function}()")
        await pool.execute(f"DROP TABLE {table}")


async def test_members_and_the_last_owner(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    url = f"/v1/organizations/{org.id}/members"
    owner = (await api.post(url, json={"email": "ana@example.com", "role": "owner"}, headers=org.headers())).json()
    viewer = await api.post(url, json={"email": "bo@example.com", "role": "viewer"}, headers=org.headers())
    assert viewer.status_code == 201
    assert (
        await api.post(url, json={"email": "bo@example.com", "role": "admin"}, headers=org.headers())
    ).status_code == 409
    last = await api.delete(f"{url}/{owner['data']['id']}", headers=org.headers())
    assert last.status_code == 409 and last.json()["error"]["code"] == "LAST_OWNER"
    assert (await api.delete(f"{url}/{viewer.json()['data']['id']}", headers=org.headers())).status_code == 200
    second = (await api.post(url, json={"email": "cy@example.com", "role": "owner"}, headers=org.headers())).json()
    assert (await api.delete(f"{url}/{owner['data']['id']}", headers=org.headers())).status_code == 200
    emails = [m["email"] for m in (await api.get(url, headers=org.headers())).json()["data"]]
    assert emails == ["cy@example.com"] and second["data"]["role"] == "owner"
    roles = (await api.get("/v1/roles", headers=org.headers())).json()["data"]
    assert [r["name"] for r in roles] == ["viewer", "editor", "admin", "owner"]
    created = await api.post(
        "/v1/organizations", json={"name": "spinoff", "ownerEmail": "d@example.com"}, headers=org.headers()
    )
    assert created.status_code == 201
    new_key = created.json()["data"]["ownerKey"]
    mine = (await api.get("/v1/organizations", headers={"X-API-Key": new_key})).json()["data"]
    assert [o["name"] for o in mine] == ["spinoff"]
    assert (await api.get(f"/v1/organizations/{org.id}", headers={"X-API-Key": new_key})).status_code == 404


@pytest.mark.parametrize(
    "settings",
    [{"rate_limit_reads_per_second": 4.0, "rate_limit_writes_per_second": 2.0, "instance_heartbeat_seconds": 0.2}],
    indirect=True,
)
async def test_rate_limits_answer_429_and_hold_across_api_processes(
    api: httpx.AsyncClient, org: Org, settings: Settings, pool: asyncpg.Pool
) -> None:
    responses = [await api.get("/v1/clusters", headers=org.headers()) for _ in range(12)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["error"]["code"] == "RATE_LIMITED"
    writes = [
        await api.post("/v1/clusters?dryRun=true", json=deploy_document(), headers=org.headers()) for _ in range(6)
    ]
    assert 429 in {w.status_code for w in writes}
    # Audit rows are written just behind the answers (the key is rate limited, so no API read).
    for _ in range(200):
        audited = await pool.fetchval(
            "SELECT count(*) FROM audit_events WHERE organization_id = $1 AND action = 'RATE_LIMITED'", org.id
        )
        if audited:
            break
        await asyncio.sleep(0.02)
    assert audited >= 1

    # A second API process: both learn there are two, and each allows half the rate.
    _, fresh = await create_api_key(pool, org.id, "fresh", "viewer")
    second = create_app(settings)
    async with second.router.lifespan_context(second):
        await asyncio.sleep(0.6)  # a few heartbeats
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://two") as other:
            assert second.state.guards.limiter.instances == 2
            ok = 0
            for _ in range(10):
                for client in (api, other):
                    if (await client.get("/v1/clusters", headers={"X-API-Key": fresh})).status_code == 200:
                        ok += 1
    # 4 reads/s for the key in all: a burst across both processes gets about 4, never 8.
    assert ok <= 5, ok


async def test_rows_of_api_processes_that_died_unannounced_are_deleted(settings: Settings, pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO api_instances (id, heartbeat_at) VALUES ('api_killed', now() - interval '2 hours'),"
        " ('api_quiet', now() - interval '30 seconds')"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):  # the process registers with a first heartbeat
        left = await pool.fetch("SELECT id FROM api_instances WHERE id IN ('api_killed', 'api_quiet')")
    await pool.execute("DELETE FROM api_instances WHERE id = 'api_quiet'")
    assert [r["id"] for r in left] == ["api_quiet"]  # stale, not counted, but not yet forgotten


async def test_oversized_bodies_are_refused_before_reading(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    huge = b'{"apiVersion": "' + b"x" * 2_000_000 + b'"}'
    response = await api.post(
        "/v1/clusters", content=huge, headers=org.headers() | {"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "BODY_TOO_LARGE"
    assert response.headers.get("X-Request-ID")


@pytest.mark.usefixtures("worker")
async def test_mutations_and_refusals_are_audited_and_exportable(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    accepted = (
        await api.post(
            "/v1/clusters",
            json=deploy_document("audited", phaseSeconds=2),
            headers=org.headers() | {"User-Agent": "audit-test"},
        )
    ).json()["data"]
    await api.post(f"/v1/operations/{accepted['operationId']}/cancel", headers=org.headers())
    _, viewer = await create_api_key(pool, org.id, "viewer", "viewer")
    await api.delete(f"/v1/clusters/{accepted['clusterId']}", headers=org.headers(viewer))
    await api.get("/v1/clusters", headers={"Authorization": "Bearer cfk_wrong"})
    await wait_for_operation(api, org.headers(), accepted["operationId"])

    page = (await api.get("/v1/audit/events", params={"pageSize": 100}, headers=org.headers())).json()["data"]
    events = page["events"]
    deploy = next(e for e in events if e["event_type"] == "CLUSTER" and e["action"] == "CREATE")
    assert deploy["success"] and deploy["status_code"] == 202 and deploy["user_agent"] == "audit-test"
    assert deploy["resource_id"] == accepted["operationId"] and deploy["request_id"].startswith("req_")
    assert deploy["ip_address"] and deploy["user_id"]
    cancel = next(e for e in events if e["action"] == "CANCEL")
    assert cancel["resource_id"] == accepted["operationId"] and cancel["success"]
    denied = next(e for e in events if e["action"] == "ACCESS_DENIED")
    assert denied["status_code"] == 403 and not denied["success"] and denied["user_role"] == "viewer"
    assert page["pagination"]["totalItems"] == len(events)

    filtered = (await api.get("/v1/audit/events", params={"action": "CANCEL"}, headers=org.headers())).json()
    assert [e["action"] for e in filtered["data"]["events"]] == ["CANCEL"]
    future = (await api.get("/v1/audit/events", params={"startDate": "2999-01-01"}, headers=org.headers())).json()
    assert future["data"]["events"] == []
    bad_date = await api.get("/v1/audit/events", params={"startDate": "yesterday"}, headers=org.headers())
    assert bad_date.status_code == 422 and bad_date.json()["error"]["details"][0]["field"] == "query.startDate"
    one = await api.get(f"/v1/audit/events/{cancel['id']}", headers=org.headers())
    assert one.json()["data"] == cancel

    exported = await api.get("/v1/audit/events/export", params={"format": "json"}, headers=org.headers())
    assert exported.status_code == 200 and len(json.loads(exported.content)) == len(events)
    as_csv = await api.get("/v1/audit/events/export", params={"format": "csv"}, headers=org.headers())
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == len(events) and {"CANCEL", "CREATE"} <= {r["action"] for r in rows}
    stats = (await api.get("/v1/audit/stats", params={"period": "7d"}, headers=org.headers())).json()["data"]
    assert stats["total_events"] == len(events) and stats["events_by_action"]["CANCEL"] == 1

    other_org = await create_organization(pool, "snoop")
    _, snoop = await create_api_key(pool, other_org, "snoop", "owner")
    assert (await api.get("/v1/audit/events", headers=org.headers(snoop))).json()["data"]["events"] == []
    assert (await api.get(f"/v1/audit/events/{cancel['id']}", headers=org.headers(snoop))).status_code == 404


@pytest.mark.usefixtures("worker")
async def test_secrets_never_appear_in_logs_audit_or_later_answers(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, temporal_client: Client
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="httpx")  # the test client's own log of the URLs it calls
    created = (
        await api.post("/v1/api-keys", json={"name": "secretive", "role": "owner"}, headers=org.headers())
    ).json()
    secret = created["data"]["key"]
    cluster = (await api.post("/v1/clusters", json=deploy_document("secret-keeper"), headers=org.headers())).json()
    await wait_for_operation(api, org.headers(), cluster["data"]["operationId"])
    deletion = (await api.delete(f"/v1/clusters/{cluster['data']['clusterId']}", headers={"X-API-Key": secret})).json()
    token = deletion["data"]["approvalToken"]
    await wait_for_operation(api, org.headers(), deletion["data"]["operationId"], until={"AWAITING_APPROVAL"})
    await api.post(
        f"/v1/operations/{deletion['data']['operationId']}/approval",
        json={"action": "APPROVE", "token": "cfa_wrong"},
        headers=org.headers(),
    )
    await api.post(
        f"/v1/organizations/{org.id}/clusters/secret-keeper/approval",
        params={"token": token, "action": "APPROVE"},
        headers=org.headers(),
    )
    await wait_for_operation(api, org.headers(), deletion["data"]["operationId"])

    later = [
        await api.get(path, headers=org.headers())
        for path in (
            "/v1/api-keys",
            f"/v1/api-keys/{created['data']['id']}",
            "/v1/operations",
            f"/v1/operations/{deletion['data']['operationId']}",
            "/v1/audit/events?pageSize=100",
            "/v1/audit/events/export",
        )
    ]
    audit_rows = await pool.fetch("SELECT details::text AS d, resource, resource_id FROM audit_events")
    operation_rows = await pool.fetch("SELECT workflow_input::text AS w, metadata::text AS m, message FROM operations")
    haystacks = {
        "logs": caplog.text,
        "answers": "".join(r.text for r in later),
        "audit": "".join(f"{r['d']}{r['resource']}{r['resource_id']}" for r in audit_rows),
        "operations": "".join(f"{r['w']}{r['m']}{r['message']}" for r in operation_rows),
    }
    history = await temporal_client.get_workflow_handle(deletion["data"]["operationId"]).fetch_history()
    haystacks["workflow history"] = history_text(history)
    for name, text in haystacks.items():
        assert secret not in text, f"API key found in {name}"
        assert token not in text, f"approval token found in {name}"


async def test_whoami_tells_a_key_its_organization_and_role(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    for role in ROLES:
        key_id, key = await create_api_key(pool, org.id, f"who-{role}", role)
        response = await api.get("/v1/whoami", headers=org.headers(key))
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {
            "keyId": key_id,
            "organizationId": org.id,
            "role": role,
            "name": f"who-{role}",
        }
    assert (await api.get("/v1/whoami")).status_code == 401


async def test_the_console_is_public_static_files_outside_the_api_schema(api: httpx.AsyncClient) -> None:
    redirect = await api.get("/console")
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith("/console/")
    page = await api.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset, kind in [("app.js", "javascript"), ("api.js", "javascript"), ("app.css", "text/css")]:
        response = await api.get(f"/console/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    assert (await api.get("/console/../pyproject.toml")).status_code == 404
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]
    assert "/v1/whoami" in paths
