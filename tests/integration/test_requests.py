"""What the API refuses, and how: bad documents, bad keys, conflicts, idempotent retries.

Every refusal must leave nothing behind: no operation row and no workflow.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from tests.conftest import Org
from tests.helpers import deploy_document, wait_for_operation


async def _operation_count(pool: asyncpg.Pool, org: Org) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM operations WHERE organization_id = $1", org.id))


async def _workflow_count(client: Client, settings: Settings) -> int:
    count = 0
    async for _ in client.list_workflows(f"TaskQueue = '{settings.task_queue}'"):
        count += 1
    return count


def _mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target = doc
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()

INVALID_DOCUMENTS = [
    ("apiVersion", "v2", "apiVersion"),
    ("kind", "Cluster", "kind"),
    ("spec.clusterName", "Demo_1", "spec.clusterName"),
    ("spec.clusterName", "x" * 51, "spec.clusterName"),
    ("spec.clusterName", _DELETE, "spec.clusterName"),
    ("spec.provider", "digitalocean", "spec.provider"),
    ("spec.region", "", "spec.region"),
    ("spec.clusterSpec.dataPlane.nodeGroups.0.minNode", 4, "spec.clusterSpec.dataPlane.nodeGroups[0].maxNode"),
    ("spec.clusterSpec.dataPlane.nodeGroups.0.minNode", -1, "spec.clusterSpec.dataPlane.nodeGroups[0].minNode"),
    (
        "spec.clusterSpec.dataPlane.nodeGroups.0.machineTypes",
        [],
        "spec.clusterSpec.dataPlane.nodeGroups[0].machineTypes",
    ),
    ("spec.clusterSpec.dataPlane.nodeGroups.1.name", "workers", "spec.clusterSpec.dataPlane.nodeGroups"),
    ("spec.clusterSpec.dataPlane.nodeGroups", [], "spec.clusterSpec.dataPlane.nodeGroups"),
    ("spec.provisioner.type", "eks", "spec.provisioner"),
    ("spec.provider", "aws", "spec.provisioner"),
    ("spec.provisioner.local.failAt", "NOWHERE", "spec.provisioner.local.failAt"),
    ("spec.provisioner.local.kubernetesVersion", "latest", "spec.provisioner.local.kubernetesVersion"),
    ("spec.unknownField", True, "spec.unknownField"),
    (
        "spec.clusterSpec.dataPlane.nodeGroups.0.taints",
        [{"key": "gpu", "effect": "NoSchedule", "operator": "Exists"}],
        "spec.clusterSpec.dataPlane.nodeGroups[0].taints[0].operator",
    ),
]


@pytest.mark.parametrize(("path", "value", "field"), INVALID_DOCUMENTS)
async def test_invalid_documents_are_refused_naming_the_field_and_enqueue_nothing(
    api: httpx.AsyncClient,
    org: Org,
    pool: asyncpg.Pool,
    temporal_client: Client,
    settings: Settings,
    path: str,
    value: Any,
    field: str,
) -> None:
    doc = _mutate(deploy_document(), path, value)
    response = await api.post("/v1/clusters", json=doc, headers=org.headers())
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == "VALIDATION_FAILED"
    assert field in [d["field"] for d in body["error"]["details"]], body
    assert field in body["message"]
    assert await _operation_count(pool, org) == 0
    assert await _workflow_count(temporal_client, settings) == 0


async def test_malformed_json_is_a_400(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    response = await api.post(
        "/v1/clusters", content=b'{"apiVersion": ', headers=org.headers() | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MALFORMED_JSON"
    response = await api.post("/v1/clusters", json=[1, 2], headers=org.headers())
    assert response.status_code == 422
    assert await _operation_count(pool, org) == 0


async def test_json_nested_thousands_deep_is_a_400_on_every_body_route(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    deep = b'{"spec": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    headers = org.headers() | {"Content-Type": "application/json"}
    for method, path in [
        ("POST", "/v1/clusters"),
        ("PATCH", "/v1/clusters/cl-doesnotexist"),
        ("POST", "/v1/operations/op-doesnotexist/approval"),
    ]:
        response = await api.request(method, path, content=deep, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
    assert await _operation_count(pool, org) == 0


async def test_provider_not_enabled_is_refused(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    doc = deploy_document()
    doc["spec"].update(provider="aws", region="us-east-1", provisioner={"type": "eks", "eks": {}})
    response = await api.post("/v1/clusters", json=doc, headers=org.headers())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "PROVIDER_NOT_ENABLED"
    assert response.json()["error"]["details"][0]["field"] == "spec.provider"
    assert await _operation_count(pool, org) == 0


async def test_dry_run_validates_without_enqueuing(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client, settings: Settings
) -> None:
    response = await api.post("/v1/clusters?dryRun=true", json=deploy_document(), headers=org.headers())
    assert response.status_code == 200
    assert response.json()["data"]["valid"] is True
    bad = _mutate(deploy_document(), "spec.clusterName", "Bad Name")
    response = await api.post("/v1/clusters?dryRun=true", json=bad, headers=org.headers())
    assert response.status_code == 422
    assert await _operation_count(pool, org) == 0
    assert await _workflow_count(temporal_client, settings) == 0
    assert (await api.get("/v1/clusters", headers=org.headers())).json()["data"] == []


@pytest.mark.usefixtures("worker")
async def test_legacy_flat_body_and_reference_api_version_are_accepted(api: httpx.AsyncClient, org: Org) -> None:
    flat = deploy_document("legacy-1")["spec"]
    response = await api.post("/v1/clusters", json=flat, headers=org.headers())
    assert response.status_code == 202, response.text
    cluster_id = response.json()["data"]["clusterId"]
    spec = (await api.get(f"/v1/clusters/{cluster_id}/spec", headers=org.headers())).json()["data"]
    assert spec["kind"] == "K8sCluster"
    assert spec["spec"] == flat

    aliased = deploy_document("alias-1")
    aliased["apiVersion"] = "platform.astropulse.io/v1"
    assert (await api.post("/v1/clusters", json=aliased, headers=org.headers())).status_code == 202


async def test_keys_and_roles_are_enforced(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    doc = deploy_document()
    assert (await api.post("/v1/clusters", json=doc)).status_code == 401
    bad = await api.post("/v1/clusters", json=doc, headers={"Authorization": "Bearer cfk_not-a-key"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "UNAUTHORIZED"
    assert bad.headers["WWW-Authenticate"] == "Bearer"
    _, viewer = await create_api_key(pool, org.id, "viewer", "viewer")
    refused = await api.post("/v1/clusters", json=doc, headers={"X-API-Key": viewer})
    assert refused.status_code == 403
    assert "editor" in refused.json()["message"]
    assert (await api.get("/v1/clusters", headers={"X-API-Key": viewer})).status_code == 200
    assert await _operation_count(pool, org) == 0


@pytest.mark.usefixtures("worker")
async def test_another_organizations_resources_answer_404(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    accepted = (await api.post("/v1/clusters", json=deploy_document(), headers=org.headers())).json()["data"]
    other_org = await create_organization(pool, "other")
    _, other_key = await create_api_key(pool, other_org, "other owner", "owner")
    other = {"Authorization": f"Bearer {other_key}"}
    for path in (
        f"/v1/clusters/{accepted['clusterId']}",
        f"/v1/clusters/{accepted['clusterId']}/spec",
        f"/v1/clusters/{accepted['clusterId']}/operations",
        f"/v1/clusters/{accepted['clusterId']}/progress",
        f"/v1/operations/{accepted['operationId']}",
        f"/v1/operations/{accepted['operationId']}/events",
    ):
        assert (await api.get(path, headers=other)).status_code == 404, path
    assert (await api.get("/v1/clusters", headers=other)).json()["data"] == []
    assert (await api.get("/v1/operations", headers=other)).json()["data"]["totalCount"] == 0
    # The same name is free in another organization.
    assert (await api.post("/v1/clusters", json=deploy_document(), headers=other)).status_code == 202


@pytest.mark.usefixtures("worker")
async def test_duplicate_cluster_name_is_a_409(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    first = await api.post("/v1/clusters", json=deploy_document("twin"), headers=org.headers())
    assert first.status_code == 202
    second = await api.post("/v1/clusters", json=deploy_document("twin"), headers=org.headers())
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "CLUSTER_NAME_TAKEN"
    assert second.json()["error"]["details"]["clusterId"] == first.json()["data"]["clusterId"]
    assert await _operation_count(pool, org) == 1


@pytest.mark.usefixtures("worker")
async def test_idempotency_key_replays_and_refuses_a_different_body(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    headers = org.headers() | {"Idempotency-Key": "deploy-idem-1"}
    first = await api.post("/v1/clusters", json=deploy_document("idem"), headers=headers)
    again = await api.post("/v1/clusters", json=deploy_document("idem"), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["data"] == first.json()["data"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    other = await api.post("/v1/clusters", json=deploy_document("idem-other"), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _operation_count(pool, org) == 1
    await wait_for_operation(api, org.headers(), first.json()["data"]["operationId"])


@pytest.mark.usefixtures("worker")
async def test_concurrent_requests_with_one_idempotency_key_make_one_operation(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    headers = org.headers() | {"Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(api.post("/v1/clusters", json=deploy_document("burst"), headers=headers) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["data"]["operationId"] for r in responses}) == 1
    assert await _operation_count(pool, org) == 1


@pytest.mark.usefixtures("worker")
async def test_operation_list_filters_and_pages(api: httpx.AsyncClient, org: Org) -> None:
    ids = []
    for index in range(5):
        accepted = (await api.post("/v1/clusters", json=deploy_document(f"page-{index}"), headers=org.headers())).json()
        ids.append(accepted["data"]["operationId"])
    for op in ids:
        await wait_for_operation(api, org.headers(), op)
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if token:
            params["pageToken"] = token
        page = (await api.get("/v1/operations", params=params, headers=org.headers())).json()["data"]
        assert page["totalCount"] == 5
        seen += [o["operationId"] for o in page["operations"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert seen == list(reversed(ids))
    filtered = await api.get("/v1/operations", params={"status": "FAILED"}, headers=org.headers())
    assert filtered.json()["data"]["totalCount"] == 0
    typed = await api.get("/v1/operations", params={"operationType": "CLUSTER_DEPLOY"}, headers=org.headers())
    assert typed.json()["data"]["totalCount"] == 5
    wrong = await api.get("/v1/operations", params={"status": "DONE"}, headers=org.headers())
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["field"] == "query.status"
    forged = await api.get("/v1/operations", params={"pageToken": "nonsense!"}, headers=org.headers())
    assert forged.status_code == 400
    assert forged.json()["error"]["code"] == "INVALID_PAGE_TOKEN"


async def test_crafted_page_tokens_and_dates_are_4xx_naming_the_parameter(api: httpx.AsyncClient, org: Org) -> None:
    """Issue 20, item 4: a page token decoding to a NUL byte, and dates that leave years 1-9999
    once in UTC, were 500s (and the export a 200 with the body `[`)."""
    response = await api.post("/v1/clusters", json=deploy_document("crafted"), headers=org.headers())
    assert response.status_code == 202, response.text
    cluster_id = response.json()["data"]["clusterId"]
    for path in ("/v1/operations", f"/v1/clusters/{cluster_id}/operations"):
        for token in ("b3BfAA", "b3Bf4oCU", "b3BfJyBPUiAxPTE"):  # op_\0, op_ plus a dash, op_' OR 1=1
            answer = await api.get(path, params={"pageToken": token}, headers=org.headers())
            assert answer.status_code == 400, (path, token, answer.text)
            assert answer.json()["error"]["code"] == "INVALID_PAGE_TOKEN"
    for field, value in (("startDate", "0001-01-01T00:00:00+14:00"), ("endDate", "9999-12-31T23:59:59-14:00")):
        for path in ("/v1/audit/events", "/v1/audit/events/export"):
            answer = await api.get(path, params={field: value}, headers=org.headers())
            assert answer.status_code == 422, (path, field, answer.text)
            assert field in answer.json()["message"]


@pytest.mark.parametrize(
    ("gke", "field"),
    [
        ({"maintenanceWindow": {"startTime": "03:00", "duration": "1h"}}, "spec.gke.maintenanceWindow.duration"),
        ({"maintenanceWindow": {"startTime": "25:00", "duration": "4h"}}, "spec.gke.maintenanceWindow.startTime"),
        ({"authorizedNetworks": ["10.0.0.1/8"]}, "spec.gke.authorizedNetworks[0]"),
    ],
)
async def test_update_settings_a_cloud_would_refuse_are_a_422_naming_the_field(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, gke: dict[str, Any], field: str
) -> None:
    body = {"apiVersion": "clusterflow.dev/v1", "kind": "K8sClusterUpdate", "spec": {"gke": gke}}
    response = await api.patch("/v1/clusters/cl_unknown", json=body, headers=org.headers())
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]], response.json()
    assert await _operation_count(pool, org) == 0


async def test_a_workflow_input_over_the_payload_limit_is_a_413_and_leaves_nothing(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client, settings: Settings
) -> None:
    """About 840 KB of emoji labels, under the body limit, grow past Temporal's 2 MB blob limit
    once the data converter escapes them: refused at once, never a 503 a client would retry."""
    doc = deploy_document("emoji")
    labels = {f"k{i}": "\U0001f680" * 63 for i in range(64)}
    doc["spec"]["clusterSpec"]["dataPlane"]["nodeGroups"] = [
        {"name": f"g{i}", "machineTypes": ["medium"], "minNode": 1, "maxNode": 3, "labels": labels} for i in range(50)
    ]
    body = json.dumps(doc, ensure_ascii=False).encode()
    assert 800_000 < len(body) < settings.max_body_bytes
    headers = org.headers() | {"Content-Type": "application/json", "Idempotency-Key": "emoji"}
    for _ in range(2):  # the same answer every time: nothing to retry
        response = await api.post("/v1/clusters", content=body, headers=headers)
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "PAYLOAD_TOO_LARGE"
        assert error["details"]["limitBytes"] == settings.max_workflow_input_bytes
        assert error["details"]["encodedBytes"] > settings.max_workflow_input_bytes
        assert str(settings.max_workflow_input_bytes) in response.json()["message"]
    assert await _operation_count(pool, org) == 0
    assert await pool.fetchval("SELECT count(*) FROM clusters WHERE organization_id = $1", org.id) == 0
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE organization_id = $1", org.id) == 0
    assert await _workflow_count(temporal_client, settings) == 0
    # The same key with a body that fits is a new request, not a replay of the refusal.
    small = await api.post(
        "/v1/clusters", json=deploy_document("emoji"), headers=org.headers() | {"Idempotency-Key": "emoji"}
    )
    assert small.status_code == 202, small.text


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("text/plain", "utf-8"),
        ("application/x-www-form-urlencoded", "utf-8"),
        ("multipart/form-data; boundary=x", "utf-8"),
        ("application/xml", "utf-8"),
        (None, "utf-8"),
        ("application/json; charset=utf-16", "utf-16"),
        ("application/merge-patch+json", "utf-8"),  # PATCH /v1/clusters/{id} takes it; deploy does not
    ],
)
async def test_bodies_that_are_not_json_in_utf8_are_a_415_and_enqueue_nothing(
    api: httpx.AsyncClient,
    org: Org,
    pool: asyncpg.Pool,
    temporal_client: Client,
    settings: Settings,
    content_type: str | None,
    encoding: str,
) -> None:
    body = json.dumps(deploy_document("typed")).encode(encoding)
    headers = org.headers() | ({"Content-Type": content_type} if content_type else {})
    request = api.build_request("POST", "/v1/clusters", content=body, headers=headers)
    assert request.headers.get("Content-Type") == content_type
    response = await api.send(request)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert error["details"]["field"] == "Content-Type"
    assert "application/json" in error["details"]["accepted"]
    assert await _operation_count(pool, org) == 0
    assert await _workflow_count(temporal_client, settings) == 0


async def test_json_in_utf8_and_a_merge_patch_where_the_route_takes_it_are_accepted(
    api: httpx.AsyncClient, org: Org
) -> None:
    body = json.dumps(deploy_document("utf8")).encode()
    headers = org.headers() | {"Content-Type": "application/json; charset=UTF-8"}
    deployed = await api.post("/v1/clusters", content=body, headers=headers)
    assert deployed.status_code == 202, deployed.text
    patch = await api.patch(
        f"/v1/clusters/{deployed.json()['data']['clusterId']}",
        content=b'{"metadata": {"labels": {"team": "payments"}}}',
        headers=org.headers() | {"Content-Type": "application/merge-patch+json"},
    )
    assert patch.status_code != 415, patch.text


async def test_unknown_query_parameters_are_a_400_naming_them_and_enqueue_nothing(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client, settings: Settings
) -> None:
    misspelt = await api.post("/v1/clusters?dryrun=true", json=deploy_document("typo"), headers=org.headers())
    assert misspelt.status_code == 400, misspelt.text
    error = misspelt.json()["error"]
    assert error["code"] == "UNKNOWN_QUERY_PARAMETER"
    assert [d["field"] for d in error["details"]] == ["dryrun"]
    assert "dryRun" in misspelt.json()["message"]  # what the route does take
    assert await _operation_count(pool, org) == 0
    assert await pool.fetchval("SELECT count(*) FROM clusters WHERE organization_id = $1", org.id) == 0
    assert await _workflow_count(temporal_client, settings) == 0

    listing = await api.get("/v1/operations?limt=5&status=RUNNING&x=1", headers=org.headers())
    assert listing.status_code == 400, listing.text
    assert [d["field"] for d in listing.json()["error"]["details"]] == ["limt", "x"]
    assert (await api.get("/v1/operations?limit=5&status=RUNNING", headers=org.headers())).status_code == 200
    dry = await api.post("/v1/clusters?dryRun=true", json=deploy_document("typo"), headers=org.headers())
    assert dry.status_code == 200, dry.text


@pytest.mark.parametrize("last_event_id", ["\u00b2", "\u0661\u0662", "12a", "-1", "9" * 40])
async def test_a_last_event_id_that_is_not_an_ascii_sequence_number_is_refused_naming_the_header(
    api: httpx.AsyncClient, org: Org, last_event_id: str
) -> None:
    deployed = await api.post("/v1/clusters", json=deploy_document("resume"), headers=org.headers())
    operation_id = deployed.json()["data"]["operationId"]
    headers: dict[str, Any] = org.headers() | {"Last-Event-ID": last_event_id.encode()}
    for accept in ("text/event-stream", "application/json"):
        response = await api.get(f"/v1/operations/{operation_id}/events", headers=headers | {"Accept": accept})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == "Last-Event-ID"


@pytest.mark.parametrize("settings", [{"max_workflow_input_bytes": 64 * 1024 * 1024}], indirect=True)
@pytest.mark.parametrize("groups", [25, 50])
async def test_a_start_temporal_refuses_for_good_is_not_a_retryable_503_and_leaves_nothing(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, settings: Settings, groups: int
) -> None:
    """With the payload limit set above Temporal's own, Temporal refuses the start itself (25
    groups: its 2 MB blob limit, INVALID_ARGUMENT; 50: gRPC's 4 MB message limit,
    RESOURCE_EXHAUSTED): an error with its cause, not 503 + Retry-After."""
    doc = deploy_document("blob")
    labels = {f"k{i}": "\U0001f680" * 63 for i in range(64)}
    doc["spec"]["clusterSpec"]["dataPlane"]["nodeGroups"] = [
        {"name": f"g{i}", "machineTypes": ["medium"], "minNode": 1, "maxNode": 3, "labels": labels}
        for i in range(groups)
    ]
    response = await api.post("/v1/clusters", json=doc, headers=org.headers() | {"Idempotency-Key": "blob"})
    assert response.status_code == 500, response.text
    assert "Retry-After" not in response.headers
    assert response.json()["error"]["code"] == "WORKFLOW_START_REFUSED"
    assert "RPCError: " in response.json()["message"]  # Temporal's cause, passed on
    assert await _operation_count(pool, org) == 0
    assert await pool.fetchval("SELECT count(*) FROM clusters WHERE organization_id = $1", org.id) == 0
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE organization_id = $1", org.id) == 0
