"""Cluster labels through the API: set at deploy (and registration), changed by a merge patch,
selected by `labelSelector` in PostgreSQL; every answer checked against the clusters table."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from clusterflow.devstack.postgres import free_port
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from tests.conftest import Org
from tests.helpers import deploy_document, wait_for_operation
from tests.processes import settings_env, spawn, stop, wait_http

pytestmark = pytest.mark.usefixtures("worker")

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def labelled(name: str, labels: dict[str, Any] | None) -> dict[str, Any]:
    document = deploy_document(name, phaseSeconds=0)
    if labels is not None:
        document["metadata"] = {"labels": labels}
    return document


async def deploy(api: httpx.AsyncClient, org: Org, name: str, labels: dict[str, Any] | None) -> str:
    response = await api.post("/v1/clusters", json=labelled(name, labels), headers=org.headers())
    assert response.status_code == 202, response.text
    record = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"])
    assert record["status"] == "SUCCEEDED", record
    return str(response.json()["data"]["clusterId"])


async def stored_labels(pool: asyncpg.Pool, cluster_id: str) -> dict[str, str]:
    value = await pool.fetchval("SELECT labels FROM clusters WHERE id = $1", cluster_id)
    return dict(value)


async def names(api: httpx.AsyncClient, org: Org, selector: str) -> list[str]:
    response = await api.get("/v1/clusters", params={"labelSelector": selector}, headers=org.headers())
    assert response.status_code == 200, response.text
    return [c["clusterName"] for c in response.json()["data"]]


async def test_deploy_labels_are_stored_returned_and_kept_apart_from_cloud_tags(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    labels = {"env": "prod", "app.kubernetes.io/team": "payments", "empty": ""}
    cluster_id = await deploy(api, org, "lab-1", labels)
    assert await stored_labels(pool, cluster_id) == labels
    assert await pool.fetchval("SELECT tags FROM clusters WHERE id = $1", cluster_id) == {}

    cluster = (await api.get(f"/v1/clusters/{cluster_id}", headers=org.headers())).json()["data"]
    assert cluster["labels"] == labels
    assert cluster["tags"] == {}
    listed = (await api.get("/v1/clusters", headers=org.headers())).json()["data"]
    assert [c["labels"] for c in listed if c["clusterId"] == cluster_id] == [labels]
    spec = (await api.get(f"/v1/clusters/{cluster_id}/spec", headers=org.headers())).json()["data"]
    assert spec["metadata"] == {"labels": labels}

    unlabelled = await deploy(api, org, "lab-2", None)
    assert await stored_labels(pool, unlabelled) == {}
    assert (await api.get(f"/v1/clusters/{unlabelled}", headers=org.headers())).json()["data"]["labels"] == {}


@pytest.mark.parametrize(
    ("labels", "field", "fragment"),
    [
        ({"Bad Key": "x"}, "metadata.labels.Bad Key.[key]", "only letters"),
        ({"Example.com/team": "x"}, "metadata.labels.Example.com/team.[key]", "DNS subdomain"),
        ({"env": "prod/eu"}, "metadata.labels.env", "label value 'prod/eu'"),
        ({"env": "v" * 64}, "metadata.labels.env", "63 characters or less"),
        ({"env": 3}, "metadata.labels.env", "string"),
        ({f"k{i}": "v" for i in range(65)}, "metadata.labels", "at most 64"),
    ],
)
async def test_invalid_deploy_labels_are_422_naming_the_label_and_nothing_is_written(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, labels: dict[str, Any], field: str, fragment: str
) -> None:
    response = await api.post("/v1/clusters", json=labelled("bad-labels", labels), headers=org.headers())
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert any(d["field"] == field and fragment in d["message"] for d in details), details
    assert await pool.fetchval("SELECT count(*) FROM clusters WHERE organization_id = $1", org.id) == 0
    assert await pool.fetchval("SELECT count(*) FROM operations WHERE organization_id = $1", org.id) == 0

    refused = await api.post(
        "/v1/clusters", json={**labelled("bad-labels", None), "metadata": {"name": "x"}}, headers=org.headers()
    )
    assert refused.status_code == 422
    assert [d["field"] for d in refused.json()["error"]["details"]] == ["metadata.name"]


async def test_merge_patch_sets_and_removes_labels_without_an_operation(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    cluster_id = await deploy(api, org, "patch-1", {"env": "dev", "team": "a", "tier": "web"})
    operations_before = await pool.fetchval("SELECT count(*) FROM operations WHERE cluster_id = $1", cluster_id)

    response = await api.patch(
        f"/v1/clusters/{cluster_id}",
        json={"metadata": {"labels": {"env": "prod", "team": None, "owner": "sre"}}},
        headers={**org.headers(), **MERGE_PATCH},
    )
    assert response.status_code == 200, response.text
    expected = {"env": "prod", "tier": "web", "owner": "sre"}
    assert response.json()["data"]["labels"] == expected
    assert response.json()["data"]["clusterId"] == cluster_id
    assert await stored_labels(pool, cluster_id) == expected
    assert await pool.fetchval("SELECT count(*) FROM operations WHERE cluster_id = $1", cluster_id) == operations_before

    # Removing a key that is not there, and an empty patch, change nothing.
    same = await api.patch(
        f"/v1/clusters/{cluster_id}",
        json={"metadata": {"labels": {"gone": None}}},
        headers={**org.headers(), **MERGE_PATCH},
    )
    assert same.status_code == 200
    assert same.json()["data"]["labels"] == expected
    empty = await api.patch(f"/v1/clusters/{cluster_id}", json={}, headers={**org.headers(), **MERGE_PATCH})
    assert empty.status_code == 200
    assert await stored_labels(pool, cluster_id) == expected

    cleared = await api.patch(
        f"/v1/clusters/{cluster_id}", json={"metadata": {"labels": None}}, headers={**org.headers(), **MERGE_PATCH}
    )
    assert cleared.status_code == 200
    assert cleared.json()["data"]["labels"] == {}
    assert await stored_labels(pool, cluster_id) == {}

    # Each patch is audited (the writer flushes in the background).
    for _ in range(100):
        audited = await pool.fetchval(
            "SELECT count(*) FROM audit_events WHERE organization_id = $1 AND resource_id = $2 AND action = 'UPDATE'",
            org.id,
            cluster_id,
        )
        if audited >= 4:
            break
        await asyncio.sleep(0.05)
    assert audited == 4


async def test_merge_patch_refuses_other_fields_invalid_labels_roles_and_other_organizations(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    cluster_id = await deploy(api, org, "patch-2", {"env": "dev"})
    headers = {**org.headers(), **MERGE_PATCH}

    other_fields = await api.patch(
        f"/v1/clusters/{cluster_id}",
        json={"spec": {"kubernetesVersion": "1.32"}, "metadata": {"labels": {"env": "prod"}, "name": "x"}},
        headers=headers,
    )
    assert other_fields.status_code == 422, other_fields.text
    assert sorted(d["field"] for d in other_fields.json()["error"]["details"]) == ["metadata.name", "spec"]

    for labels, field in (
        ({"bad key": "x"}, "metadata.labels.bad key.[key]"),
        ({"env": "-x"}, "metadata.labels.env"),
        ({"env": 1}, "metadata.labels.env"),
    ):
        bad = await api.patch(f"/v1/clusters/{cluster_id}", json={"metadata": {"labels": labels}}, headers=headers)
        assert bad.status_code == 422, bad.text
        assert field in [d["field"] for d in bad.json()["error"]["details"]]
    not_object = await api.patch(f"/v1/clusters/{cluster_id}", json={"metadata": {"labels": ["env"]}}, headers=headers)
    assert not_object.status_code == 422
    too_many = await api.patch(
        f"/v1/clusters/{cluster_id}",
        json={"metadata": {"labels": {f"k{i}": "v" for i in range(64)}}},
        headers=headers,
    )
    assert too_many.status_code == 422, too_many.text
    assert too_many.json()["error"]["details"][0]["field"] == "metadata.labels"
    assert await stored_labels(pool, cluster_id) == {"env": "dev"}

    _, viewer_key = await create_api_key(pool, org.id, "viewer", "viewer")
    as_viewer = await api.patch(
        f"/v1/clusters/{cluster_id}",
        json={"metadata": {"labels": {"env": "prod"}}},
        headers={**org.headers(viewer_key), **MERGE_PATCH},
    )
    assert as_viewer.status_code == 403

    other_org = await create_organization(pool, "other-labels")
    _, other_key = await create_api_key(pool, other_org, "other", "owner")
    foreign = await api.patch(
        f"/v1/clusters/{cluster_id}",
        json={"metadata": {"labels": {"env": "prod"}}},
        headers={**org.headers(other_key), **MERGE_PATCH},
    )
    assert foreign.status_code == 404
    assert await stored_labels(pool, cluster_id) == {"env": "dev"}

    # A K8sClusterUpdate (application/json) is still the update operation, and says how to patch labels.
    labels_as_update = await api.patch(
        f"/v1/clusters/{cluster_id}", json={"metadata": {"labels": {"env": "prod"}}}, headers=org.headers()
    )
    assert labels_as_update.status_code == 422
    assert "metadata" in [d["field"] for d in labels_as_update.json()["error"]["details"]]


async def test_label_selectors_filter_in_the_database_and_never_cross_organizations(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await deploy(api, org, "sel-a", {"env": "prod", "team": "a"})
    await deploy(api, org, "sel-b", {"env": "prod", "team": "b", "legacy": "true"})
    await deploy(api, org, "sel-c", {"env": "dev", "team": "c"})
    await deploy(api, org, "sel-d", None)
    other_org = await create_organization(pool, "other-selectors")
    _, other_key = await create_api_key(pool, other_org, "other", "owner")
    other = Org(other_org, other_key)
    await deploy(api, other, "sel-x", {"env": "prod", "team": "a"})

    assert await names(api, org, "env=prod") == ["sel-b", "sel-a"]
    assert await names(api, org, "env==prod,team in (a,b)") == ["sel-b", "sel-a"]
    assert await names(api, org, "team in (c, z)") == ["sel-c"]
    assert await names(api, org, "team notin (a,b)") == ["sel-d", "sel-c"]
    assert await names(api, org, "env!=prod") == ["sel-d", "sel-c"]
    assert await names(api, org, "legacy") == ["sel-b"]
    assert await names(api, org, "!legacy") == ["sel-d", "sel-c", "sel-a"]
    assert await names(api, org, "!team,!env") == ["sel-d"]
    assert await names(api, org, "env=prod,!legacy") == ["sel-a"]
    assert await names(api, org, "env=staging") == []
    assert await names(api, org, "") == ["sel-d", "sel-c", "sel-b", "sel-a"]
    assert await names(api, other, "env=prod") == ["sel-x"]
    assert await names(api, other, "team notin (z)") == ["sel-x"]

    # The same answers as the database's own reading of each row's labels.
    rows = await pool.fetch("SELECT name, labels FROM clusters WHERE organization_id = $1", org.id)
    prod = sorted(r["name"] for r in rows if dict(r["labels"]).get("env") == "prod")
    assert sorted(await names(api, org, "env=prod")) == prod

    # A keyset page of a filtered list, the next token in a header.
    first = await api.get("/v1/clusters", params={"labelSelector": "!legacy", "limit": 2}, headers=org.headers())
    assert [c["clusterName"] for c in first.json()["data"]] == ["sel-d", "sel-c"]
    token = first.headers["X-Next-Page-Token"]
    second = await api.get(
        "/v1/clusters", params={"labelSelector": "!legacy", "limit": 2, "pageToken": token}, headers=org.headers()
    )
    assert [c["clusterName"] for c in second.json()["data"]] == ["sel-a"]
    assert "X-Next-Page-Token" not in second.headers
    forged = await api.get("/v1/clusters", params={"pageToken": "bm90LWEtY2x1c3Rlcg"}, headers=org.headers())
    assert forged.status_code == 400
    assert forged.json()["error"]["details"] == {"field": "pageToken"}


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("env in (a", "expected ',' or ')'"),
        ("env prod", "expected '=', '==', '!=', 'in' or 'notin'"),
        ("Bad_/x=y", "DNS subdomain"),
        ("env=no/slash", "label value 'no/slash'"),
        ("replicas>3", "ordering operators"),
        ("env=prod,", "expected a label key"),
    ],
)
async def test_invalid_selectors_are_400_naming_the_parameter_and_the_problem(
    api: httpx.AsyncClient, org: Org, selector: str, fragment: str
) -> None:
    response = await api.get("/v1/clusters", params={"labelSelector": selector}, headers=org.headers())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_LABEL_SELECTOR"
    assert error["details"][0]["field"] == "labelSelector"
    assert fragment in error["details"][0]["message"]


async def test_registered_clusters_carry_labels(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client
) -> None:
    response = await api.post(
        "/v1/clusters/edge-lab/register",
        json={"architecture": "amd64", "labels": {"env": "edge", "site": "store-12"}},
        headers=org.headers(),
    )
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    assert await stored_labels(pool, accepted["clusterId"]) == {"env": "edge", "site": "store-12"}
    assert await names(api, org, "env=edge") == ["edge-lab"]
    bad = await api.post("/v1/clusters/edge-bad/register", json={"labels": {"site": "store 12"}}, headers=org.headers())
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "labels.site"
    # No agent will connect: end the registration rather than leave it waiting.
    await wait_for_operation(api, org.headers(), accepted["operationId"], until={"RUNNING"})
    await temporal_client.get_workflow_handle(accepted["operationId"]).cancel()
    assert (await wait_for_operation(api, org.headers(), accepted["operationId"]))["status"] == "CANCELLED"


def cli(url: str, org: Org, *args: str) -> subprocess.CompletedProcess[str]:
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


async def test_the_cli_labels_lists_by_selector_and_shows_labels(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    first = await deploy(api, org, "cli-a", {"env": "prod"})
    second = await deploy(api, org, "cli-b", {"env": "dev", "team": "a"})
    api_settings = settings.model_copy(update={"api_port": free_port()})
    server = spawn("api", settings_env(api_settings), tmp_path / "api.log")
    url = f"http://127.0.0.1:{api_settings.api_port}"
    try:
        wait_http(f"{url}/healthz", server)
        labelled_now = await asyncio.to_thread(
            cli, url, org, "clusters", "label", second, "env=prod", "team-", "-o", "json"
        )
        assert labelled_now.returncode == 0, labelled_now.stderr
        assert json.loads(labelled_now.stdout)["labels"] == {"env": "prod"}
        assert await stored_labels(pool, second) == {"env": "prod"}

        listed = await asyncio.to_thread(cli, url, org, "clusters", "list", "-l", "env in (prod)")
        assert listed.returncode == 0, listed.stderr
        assert "cli-a" in listed.stdout and "cli-b" in listed.stdout
        assert "env=prod" in listed.stdout
        none = await asyncio.to_thread(cli, url, org, "clusters", "list", "-l", "!env", "-o", "json")
        assert json.loads(none.stdout) == []
        shown = await asyncio.to_thread(cli, url, org, "clusters", "get", first)
        assert "labels: env=prod" in shown.stdout

        bad = await asyncio.to_thread(cli, url, org, "clusters", "list", "-l", "env in (a")
        assert bad.returncode != 0
        assert "labelSelector" in bad.stderr
        refused = await asyncio.to_thread(cli, url, org, "clusters", "label", first, "Bad Key=x")
        assert refused.returncode != 0
        assert "metadata.labels" in refused.stderr
        usage = await asyncio.to_thread(cli, url, org, "clusters", "label", first, "env")
        assert usage.returncode != 0
        assert await stored_labels(pool, first) == {"env": "prod"}
    finally:
        stop(server)
