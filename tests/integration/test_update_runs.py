"""Fleet update runs on the local provider, through the HTTP API, with a real worker, real
Temporal and real PostgreSQL.

What a platform team depends on is checked where it lands: the order and overlap of the
clusters' updates from their own CLUSTER_UPDATE operation rows (start and end times), the
versions in the cluster records and in the simulated cloud, and one update operation per
cluster however the run was interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from clusterflow.contracts.update_runs import (
    Concurrency,
    FailurePolicy,
    Gate,
    GateKind,
    GateTiming,
    MaintenanceWindow,
    PlannedGroup,
    PlannedStage,
    RunPlan,
    plan_from_json,
)
from clusterflow.devstack.postgres import free_port
from clusterflow.records import local_cloud
from clusterflow.records.organizations import create_api_key
from clusterflow.settings import Settings
from tests.conftest import Org, Services
from tests.helpers import all_events, deploy_document, wait_for_operation
from tests.processes import kill_hard, settings_env, spawn, stop, wait_http


async def _deploy(api: httpx.AsyncClient, org: Org, names: list[str], version: str = "1.31") -> dict[str, str]:
    """Deploy local clusters at once; their IDs by name."""

    async def one(name: str) -> tuple[str, str]:
        doc = deploy_document(name, kubernetesVersion=version)
        response = await api.post("/v1/clusters", json=doc, headers=org.headers())
        assert response.status_code == 202, response.text
        accepted = response.json()["data"]
        record = await wait_for_operation(api, org.headers(), accepted["operationId"])
        assert record["status"] == "SUCCEEDED", record
        return name, accepted["clusterId"]

    return dict(await asyncio.gather(*(one(n) for n in names)))


async def _no_approval(api: httpx.AsyncClient, org: Org) -> None:
    policy = {"minorVersionUpgrade": False, "clusterUpdate": False}
    response = await api.put(f"/v1/organizations/{org.id}/approval-policy", json=policy, headers=org.headers())
    assert response.status_code == 200, response.text


def _run(stages: list[dict[str, Any]], *, phase_seconds: float = 0.2, **change: Any) -> dict[str, Any]:
    return {
        "name": "monthly-1.32",
        "change": {"kubernetesVersion": "1.32", "local": {"phaseSeconds": phase_seconds, **change}},
        "strategy": {"stages": stages},
    }


async def _get_run(api: httpx.AsyncClient, org: Org, run_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/update-runs/{run_id}", headers=org.headers())
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()["data"]
    return run


async def _wait_run(
    api: httpx.AsyncClient, org: Org, run_id: str, check: Any, what: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = await _get_run(api, org, run_id)
        if check(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id}: {what} not reached in {timeout}s: {run}")
        await asyncio.sleep(0.1)


def _clusters(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["clusterId"]: c for s in run["stages"] for g in s["groups"] for c in g["clusters"]}


async def _children(pool: asyncpg.Pool, run_id: str) -> list[asyncpg.Record]:
    """The run's CLUSTER_UPDATE operations as the database holds them."""
    return await pool.fetch(
        """SELECT id, cluster_id, status, started_at, completed_at, metadata FROM operations
            WHERE operation_type = 'CLUSTER_UPDATE' AND metadata->>'updateRunId' = $1""",
        run_id,
    )


def _max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.usefixtures("worker")
async def test_a_dry_run_answers_the_resolved_plan_and_bad_strategies_are_422_naming_the_field(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    ids = await _deploy(api, org, ["dev-1", "dev-2", "prod-1"])
    current = await _deploy(api, org, ["prod-new"], version="1.32")
    patch = await api.patch(
        f"/v1/clusters/{ids['prod-1']}",
        json={"metadata": {"labels": {"env": "prod"}}},
        headers=org.headers() | {"Content-Type": "application/merge-patch+json"},
    )
    assert patch.status_code == 200, patch.text
    await api.patch(
        f"/v1/clusters/{current['prod-new']}",
        json={"metadata": {"labels": {"env": "prod"}}},
        headers=org.headers() | {"Content-Type": "application/merge-patch+json"},
    )
    registered = await api.post(
        "/v1/clusters/edge-lab/register",
        json={"architecture": "amd64", "labels": {"env": "prod"}},
        headers=org.headers(),
    )
    assert registered.status_code == 202, registered.text
    registration = registered.json()["data"]
    body = _run(
        [
            {
                "name": "dev",
                "groups": [{"name": "all", "clusterIds": [ids["dev-1"], ids["dev-2"]], "maxConcurrency": "50%"}],
                "afterStageWaitSeconds": 600,
            },
            {
                "name": "prod",
                "beforeGates": [{"type": "approval", "name": "change board"}],
                "groups": [{"name": "eu", "labelSelector": "env=prod"}],
            },
        ]
    )
    response = await api.post("/v1/update-runs", params={"dryRun": "true"}, json=body, headers=org.headers())
    assert response.status_code == 200, response.text
    plan = response.json()["data"]
    assert plan["totalClusters"] == 3 and plan["approvalRequired"] is True
    dev, prod = plan["stages"]
    assert [c["clusterName"] for c in dev["groups"][0]["clusters"]] == ["dev-1", "dev-2"]
    assert dev["groups"][0]["maxConcurrency"] == 1  # 50% of 2
    assert [(c["clusterName"], c["order"]) for c in prod["groups"][0]["clusters"]] == [("prod-1", 3)]
    first = dev["groups"][0]["clusters"][0]
    assert first["currentVersion"] == "1.31" and first["targetVersion"] == "1.32"
    assert "CONTROL_PLANE" in first["phases"] and first["preflightChecks"]
    gate = prod["beforeGates"][0]
    assert len(prod["beforeGates"]) == 1
    assert {k: gate[k] for k in ("id", "type", "timing", "name", "status")} == {
        "id": "g1",
        "type": "approval",
        "timing": "before",
        "name": "change board",
        "status": "PENDING",
    }
    # The soak pushes the next stage's earliest start.
    gap = datetime.fromisoformat(prod["earliestStart"]) - datetime.fromisoformat(dev["earliestStart"])
    assert gap.total_seconds() >= 600
    assert sorted(plan["skipped"], key=lambda s: s["clusterName"]) == [
        {
            "clusterId": registration["clusterId"],
            "clusterName": "edge-lab",
            "stage": "prod",
            "group": "eu",
            "reason": "registered through an agent: its owners upgrade it",
        },
        {
            "clusterId": current["prod-new"],
            "clusterName": "prod-new",
            "stage": "prod",
            "group": "eu",
            "reason": "already on 1.32",
        },
    ]
    # No agent will connect: end the registration rather than leave it waiting.
    await wait_for_operation(api, org.headers(), registration["operationId"], until={"RUNNING"})
    cancelled = await api.post(f"/v1/operations/{registration['operationId']}/cancel", headers=org.headers())
    assert cancelled.status_code == 200, cancelled.text

    def bad(mutate: Any) -> dict[str, Any]:
        document = _run([{"name": "dev", "groups": [{"name": "all", "clusterIds": [ids["dev-1"]]}]}])
        mutate(document)
        return document

    cases = [
        (
            lambda d: d["strategy"]["stages"][0]["groups"][0]["clusterIds"].append("cl_nope"),
            "strategy.stages[0].groups[0].clusterIds[1]",
        ),
        (
            lambda d: d["strategy"]["stages"].append(
                {"name": "again", "groups": [{"name": "x", "clusterIds": [ids["dev-1"]]}]}
            ),
            "strategy.stages[1].groups[0].clusterIds[0]",
        ),
        (lambda d: d["strategy"]["stages"][0]["groups"][0].update(maxConcurrency="150%"), "maxConcurrency"),
        (
            lambda d: d["strategy"]["stages"][0]["groups"][0].update(labelSelector="env=dev"),
            "strategy.stages[0].groups[0]",
        ),
        (lambda d: d["change"].update(kubernetesVersion="latest"), "change.kubernetesVersion"),
        (
            lambda d: d["strategy"]["stages"][0].update(beforeGates=[{"type": "notBefore"}]),
            "strategy.stages[0].beforeGates[0]",
        ),
    ]
    for mutate, field in cases:
        for dry in ("true", "false"):
            response = await api.post(
                "/v1/update-runs", params={"dryRun": dry}, json=bad(mutate), headers=org.headers()
            )
            assert response.status_code == 422, (field, response.text)
            fields = [d["field"] for d in response.json()["error"]["details"]]
            assert any(field in f for f in fields), (field, fields)
    runs = await pool.fetchval(
        "SELECT count(*) FROM operations WHERE organization_id = $1 AND operation_type = 'UPDATE_RUN'", org.id
    )
    assert runs == 0
    assert (await api.get("/v1/update-runs", headers=org.headers())).json()["data"]["runs"] == []


@pytest.mark.usefixtures("worker")
async def test_a_run_upgrades_stages_in_order_with_a_soak_an_approval_gate_and_at_most_two_at_once(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, settings: Settings
) -> None:
    # The fleet: 30 clusters in 3 stages (6 dev, 12 staging in two groups, 12 prod).
    dev = [f"dev-{i}" for i in range(1, 7)]
    stg_a, stg_b = [f"stg-{i}" for i in range(1, 11)], ["stg-11", "stg-12"]
    prod = [f"prod-{i}" for i in range(1, 13)]
    names = dev + stg_a + stg_b + prod
    ids = await _deploy(api, org, names)
    stages = [
        {
            "name": "dev",
            "groups": [{"name": "all", "clusterIds": [ids[n] for n in dev], "maxConcurrency": 2}],
            "afterStageWaitSeconds": 1,
        },
        {
            "name": "staging",
            "groups": [
                {"name": "a", "clusterIds": [ids[n] for n in stg_a], "maxConcurrency": 2},
                {"name": "b", "clusterIds": [ids[n] for n in stg_b]},
            ],
        },
        {
            "name": "prod",
            "beforeGates": [{"type": "approval", "name": "change board"}],
            "groups": [{"name": "eu", "clusterIds": [ids[n] for n in prod], "maxConcurrency": "20%"}],
        },
    ]
    response = await api.post("/v1/update-runs", json=_run(stages, phase_seconds=0.2), headers=org.headers())
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    run_id = accepted["operationId"]
    assert response.headers["Location"] == f"/v1/operations/{run_id}"
    # A minor upgrade waits for an owner under the default policy: once, for the whole run.
    assert accepted["approvalRequired"] is True
    await wait_for_operation(api, org.headers(), run_id, until={"AWAITING_APPROVAL"})
    decision = await api.post(
        f"/v1/operations/{run_id}/approval",
        json={"action": "APPROVE", "token": accepted["approvalToken"]},
        headers=org.headers(),
    )
    assert decision.status_code == 200, decision.text

    waiting = await _wait_run(
        api, org, run_id, lambda r: r["stages"][2]["beforeGates"][0]["status"] == "WAITING", "the prod gate waiting"
    )
    assert waiting["status"] == "RUNNING" and waiting["stages"][2]["status"] == "WAITING"
    assert all(c["status"] == "PLANNED" for c in waiting["stages"][2]["groups"][0]["clusters"])
    assert [s["status"] for s in waiting["stages"][:2]] == ["SUCCEEDED", "SUCCEEDED"]
    # Controls that do not apply are refused by the workflow's validator, named.
    _, editor_key = await create_api_key(pool, org.id, "editor", "editor")
    editor = {"Authorization": f"Bearer {editor_key}"}
    refused = await api.post(f"/v1/update-runs/{run_id}/gates/g1/approve", json={}, headers=editor)
    assert refused.status_code == 403
    unknown = await api.post(f"/v1/update-runs/{run_id}/gates/g9/approve", json={}, headers=org.headers())
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "UNKNOWN_GATE"
    resume = await api.post(f"/v1/update-runs/{run_id}/resume", headers=org.headers())
    assert resume.status_code == 409 and resume.json()["error"]["code"] == "RUN_NOT_PAUSED"
    approve = await api.post(
        f"/v1/update-runs/{run_id}/gates/g1/approve", json={"comment": "board said yes"}, headers=org.headers()
    )
    assert approve.status_code == 200, approve.text
    again = await api.post(f"/v1/update-runs/{run_id}/gates/g1/approve", json={}, headers=org.headers())
    assert again.status_code == 409

    record = await wait_for_operation(api, org.headers(), run_id, timeout=60)
    assert record["status"] == "SUCCEEDED" and record["operationType"] == "UPDATE_RUN", record
    run = await _get_run(api, org, run_id)
    assert run["status"] == "SUCCEEDED" and run["summary"]["succeeded"] == 30, run
    assert run["stages"][2]["beforeGates"][0]["status"] == "APPROVED"

    children = await _children(pool, run_id)
    assert Counter(c["cluster_id"] for c in children) == Counter(ids.values())
    assert {c["status"] for c in children} == {"SUCCEEDED"}
    span = {c["cluster_id"]: (c["started_at"], c["completed_at"]) for c in children}
    stage_of = {ids[n]: n.split("-")[0] for n in names}
    by_stage: dict[str, list[tuple[datetime, datetime]]] = {}
    for cluster, times in span.items():
        by_stage.setdefault(stage_of[cluster], []).append(times)
    # Stages in order; the soak separates dev from staging.
    soak = min(s for s, _ in by_stage["stg"]) - max(e for _, e in by_stage["dev"])
    assert soak.total_seconds() >= 1
    assert max(e for _, e in by_stage["stg"]) <= min(s for s, _ in by_stage["prod"])
    # Never more than two at once in a group of maxConcurrency 2 (or 20% of 12), and two did run
    # together; the third of a group starts only when one of the first two has ended.
    for group in (dev, stg_a, prod):
        assert _max_overlap([span[ids[n]] for n in group]) == 2, group
    assert span[ids["stg-3"]][0] >= min(span[ids["stg-1"]][1], span[ids["stg-2"]][1])
    # The outside system: every cluster runs 1.32 in the record and in the simulated cloud.
    for cluster_id in ids.values():
        cluster = (await api.get(f"/v1/clusters/{cluster_id}", headers=org.headers())).json()["data"]
        assert cluster["kubernetesVersion"] == "1.32", cluster
        control_plane = await local_cloud.describe(pool, cluster_id, "control_plane", "control-plane")
        assert control_plane is not None and control_plane.spec["kubernetesVersion"] == "1.32"
    # Each child is an ordinary update in its cluster's history.
    history = await api.get(f"/v1/clusters/{ids['prod-1']}/operations", headers=org.headers())
    types = [o["operationType"] for o in history.json()["data"]["operations"]]
    assert types.count("CLUSTER_UPDATE") == 1
    events = [e["message"] for e in await all_events(api, org.headers(), run_id)]
    assert any("gate g1" in m and "approved" in m for m in events)
    listed = (await api.get("/v1/update-runs", headers=org.headers())).json()["data"]["runs"]
    assert [(r["runId"], r["status"]) for r in listed] == [(run_id, "SUCCEEDED")]


@pytest.mark.usefixtures("worker")
async def test_a_failure_threshold_halts_the_run_and_resume_finishes_it(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await _no_approval(api, org)
    ids = await _deploy(api, org, ["a-1", "a-2", "a-3", "b-1"])
    stages = [
        {
            "name": "first",
            "groups": [{"name": "g", "clusterIds": [ids["a-1"], ids["a-2"], ids["a-3"]]}],
            "failurePolicy": {"maxFailed": 0},
        },
        {"name": "second", "groups": [{"name": "g", "clusterIds": [ids["b-1"]]}]},
    ]
    body = _run(stages, phase_seconds=0.1, failAt="CONTROL_PLANE", clusterIds=[ids["a-1"]])
    response = await api.post("/v1/update-runs", json=body, headers=org.headers())
    assert response.status_code == 202, response.text
    run_id = response.json()["data"]["operationId"]

    halted = await _wait_run(api, org, run_id, lambda r: r["status"] == "HALTED", "halted")
    clusters = _clusters(halted)
    assert clusters[ids["a-1"]]["status"] == "FAILED"
    assert clusters[ids["a-2"]]["status"] == "PLANNED" and clusters[ids["a-3"]]["status"] == "PLANNED"
    assert "failure policy" in halted["message"]
    await asyncio.sleep(0.5)  # halted means halted: nothing else starts
    assert len(await _children(pool, run_id)) == 1
    operation = (await api.get(f"/v1/operations/{run_id}", headers=org.headers())).json()["data"]
    assert operation["status"] == "RUNNING"
    assert operation["progressPercentage"] == 25  # one cluster of four is done (it failed)

    resumed = await api.post(f"/v1/update-runs/{run_id}/resume", headers=org.headers())
    assert resumed.status_code == 200, resumed.text
    record = await wait_for_operation(api, org.headers(), run_id, timeout=60)
    assert record["status"] == "SUCCEEDED", record
    run = await _get_run(api, org, run_id)
    assert run["summary"] == {
        "total": 4,
        "succeeded": 3,
        "failed": 1,
        "cancelled": 0,
        "running": 0,
        "skipped": 0,
        "pending": 0,
    }, run
    assert run["stages"][0]["status"] == "COMPLETED_WITH_FAILURES"
    versions = {
        name: (await api.get(f"/v1/clusters/{cid}", headers=org.headers())).json()["data"]["kubernetesVersion"]
        for name, cid in ids.items()
    }
    assert versions == {"a-1": "1.31", "a-2": "1.32", "a-3": "1.32", "b-1": "1.32"}


@pytest.mark.usefixtures("worker")
async def test_cancel_mid_run_rolls_back_the_running_children_only(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await _no_approval(api, org)
    ids = await _deploy(api, org, ["early", "c-1", "c-2", "c-3", "c-4"])
    stages = [
        {"name": "canary", "groups": [{"name": "g", "clusterIds": [ids["early"]]}]},
        {
            "name": "rest",
            "groups": [
                {"name": "g", "clusterIds": [ids[n] for n in ("c-1", "c-2", "c-3", "c-4")], "maxConcurrency": 2}
            ],
        },
    ]
    response = await api.post("/v1/update-runs", json=_run(stages, phase_seconds=0.6), headers=org.headers())
    run_id = response.json()["data"]["operationId"]

    def two_running(run: dict[str, Any]) -> bool:
        clusters = _clusters(run)
        return sum(c["status"] == "RUNNING" and c["progressPercentage"] >= 20 for c in clusters.values()) == 2

    await _wait_run(api, org, run_id, two_running, "two clusters of the second stage mid-update")
    cancel = await api.post(f"/v1/update-runs/{run_id}/cancel", headers=org.headers())
    assert cancel.status_code == 200, cancel.text
    record = await wait_for_operation(api, org.headers(), run_id, timeout=60)
    assert record["status"] == "CANCELLED", record

    children = {c["cluster_id"]: c for c in await _children(pool, run_id)}
    assert children[ids["early"]]["status"] == "SUCCEEDED"
    assert {children[ids[n]]["status"] for n in ("c-1", "c-2")} == {"CANCELLED"}
    assert ids["c-3"] not in children and ids["c-4"] not in children
    assert "1 clusters already updated stay updated" in record["message"]
    run = await _get_run(api, org, run_id)
    assert run["status"] == "CANCELLED"
    assert {_clusters(run)[ids[n]]["status"] for n in ("c-3", "c-4")} == {"PLANNED"}
    for name in ("c-1", "c-2"):
        cluster = (await api.get(f"/v1/clusters/{ids[name]}", headers=org.headers())).json()["data"]
        assert cluster["rollbackStatus"]["status"] == "COMPLETED", cluster
        assert cluster["state"] == "ACTIVE"
    for name in ("c-3", "c-4"):
        cluster = (await api.get(f"/v1/clusters/{ids[name]}", headers=org.headers())).json()["data"]
        assert cluster["kubernetesVersion"] == "1.31" and cluster["rollbackStatus"] is None
    early = (await api.get(f"/v1/clusters/{ids['early']}", headers=org.headers())).json()["data"]
    assert early["kubernetesVersion"] == "1.32"


@pytest.mark.usefixtures("worker")
async def test_a_busy_cluster_is_skipped_when_the_strategy_says_so(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await _no_approval(api, org)
    ids = await _deploy(api, org, ["busy", "free"])
    # A slow single update holds the first cluster while the run reaches it.
    update = {
        "apiVersion": "clusterflow.dev/v1",
        "kind": "K8sClusterUpdate",
        "spec": {"tags": {"team": "a"}, "local": {"phaseSeconds": 1.5}},
    }
    held = await api.patch(f"/v1/clusters/{ids['busy']}", json=update, headers=org.headers())
    assert held.status_code == 202, held.text
    body = _run([{"name": "only", "groups": [{"name": "g", "clusterIds": [ids["busy"], ids["free"]]}]}])
    body["strategy"]["busyCluster"] = {"action": "skip"}
    response = await api.post("/v1/update-runs", json=body, headers=org.headers())
    run_id = response.json()["data"]["operationId"]
    record = await wait_for_operation(api, org.headers(), run_id, timeout=60)
    assert record["status"] == "SUCCEEDED", record
    run = await _get_run(api, org, run_id)
    busy = _clusters(run)[ids["busy"]]
    assert busy["status"] == "SKIPPED" and busy["reason"].startswith("busy: operation ")
    assert _clusters(run)[ids["free"]]["status"] == "SUCCEEDED"
    assert [c["cluster_id"] for c in await _children(pool, run_id)] == [ids["free"]]
    held_record = await wait_for_operation(api, org.headers(), held.json()["data"]["operationId"], timeout=30)
    assert held_record["status"] == "SUCCEEDED"


@pytest.mark.usefixtures("worker")
async def test_a_busy_cluster_is_waited_for_when_the_strategy_says_so(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await _no_approval(api, org)
    ids = await _deploy(api, org, ["held"])
    update = {
        "apiVersion": "clusterflow.dev/v1",
        "kind": "K8sClusterUpdate",
        "spec": {"tags": {"team": "b"}, "local": {"phaseSeconds": 1.0}},
    }
    held = await api.patch(f"/v1/clusters/{ids['held']}", json=update, headers=org.headers())
    assert held.status_code == 202, held.text
    body = _run([{"name": "only", "groups": [{"name": "g", "clusterIds": [ids["held"]]}]}], phase_seconds=0.05)
    body["strategy"]["busyCluster"] = {"action": "wait", "maxWaitSeconds": 60}
    response = await api.post("/v1/update-runs", json=body, headers=org.headers())
    run_id = response.json()["data"]["operationId"]
    waiting = await _wait_run(
        api, org, run_id, lambda r: _clusters(r)[ids["held"]]["status"] == "WAITING_BUSY", "the cluster waiting"
    )
    assert held.json()["data"]["operationId"] in _clusters(waiting)[ids["held"]]["reason"]
    record = await wait_for_operation(api, org.headers(), run_id, timeout=60)
    assert record["status"] == "SUCCEEDED", record
    first = await wait_for_operation(api, org.headers(), held.json()["data"]["operationId"])
    (child,) = await _children(pool, run_id)
    assert child["status"] == "SUCCEEDED" and child["started_at"] >= datetime.fromisoformat(first["completedAt"])
    cluster = (await api.get(f"/v1/clusters/{ids['held']}", headers=org.headers())).json()["data"]
    assert cluster["kubernetesVersion"] == "1.32" and cluster["tags"] == {"team": "b"}


@pytest.fixture
def crash_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"activity_heartbeat_timeout_seconds": 2.0})


async def test_a_worker_killed_mid_run_updates_no_cluster_twice(
    services: Services, crash_settings: Settings, org: Org, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from clusterflow.api.app import create_app

    env = settings_env(crash_settings)
    first = spawn("worker", env, tmp_path / "worker-1.log")
    second = None
    app = create_app(crash_settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                await _no_approval(api, org)
                ids = await _deploy(api, org, [f"k-{n}" for n in range(4)])
                group = {"name": "g", "clusterIds": list(ids.values()), "maxConcurrency": 2}
                body = _run([{"name": "one", "groups": [group]}], phase_seconds=0.3)
                response = await api.post("/v1/update-runs", json=body, headers=org.headers())
                run_id = response.json()["data"]["operationId"]
                await _wait_run(
                    api,
                    org,
                    run_id,
                    lambda r: (
                        sum(c["status"] == "SUCCEEDED" for c in _clusters(r).values()) >= 1
                        and any(c["status"] == "RUNNING" for c in _clusters(r).values())
                    ),
                    "one cluster done and another mid-update",
                )
                kill_hard(first)
                second = spawn("worker", env, tmp_path / "worker-2.log")
                record = await wait_for_operation(api, org.headers(), run_id, timeout=90)
                events = await all_events(api, org.headers(), run_id)
    finally:
        stop(first)
        if second is not None:
            stop(second)

    assert record["status"] == "SUCCEEDED", record
    children = await _children(pool, run_id)
    assert Counter(c["cluster_id"] for c in children) == Counter(ids.values())
    assert {c["status"] for c in children} == {"SUCCEEDED"}
    updates = await pool.fetchval(
        "SELECT count(*) FROM operations WHERE organization_id = $1 AND operation_type = 'CLUSTER_UPDATE'", org.id
    )
    assert updates == len(ids)
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    messages = Counter(e["message"] for e in events)
    assert all(count == 1 for count in messages.values()), messages
    for cluster_id in ids.values():
        control_plane = await local_cloud.describe(pool, cluster_id, "control_plane", "control-plane")
        assert control_plane is not None and control_plane.spec["kubernetesVersion"] == "1.32"


def _cli_env(url: str, org: Org) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERFLOW_", "DATABASE_URL", "TEMPORAL_"))}
    env.update(CLUSTERFLOW_URL=url, CLUSTERFLOW_API_KEY=org.owner_key, COLUMNS="200")
    return env


def _cli(url: str, org: Org, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clusterflow.cli.main", *args],
        env=_cli_env(url, org),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.usefixtures("worker")
async def test_the_cli_creates_follows_and_approves_a_run(
    api: httpx.AsyncClient, org: Org, settings: Settings, tmp_path: Path
) -> None:
    await _no_approval(api, org)
    ids = await _deploy(api, org, ["cli-1", "cli-2"])
    stages = [
        {"name": "dev", "groups": [{"name": "g", "clusterIds": [ids["cli-1"]]}]},
        {
            "name": "prod",
            "beforeGates": [{"type": "approval"}],
            "groups": [{"name": "g", "clusterIds": [ids["cli-2"]]}],
        },
    ]
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(_run(stages, phase_seconds=0.1)))
    api_settings = settings.model_copy(update={"api_port": free_port()})
    server = spawn("api", settings_env(api_settings), tmp_path / "api.log")
    url = f"http://127.0.0.1:{api_settings.api_port}"
    try:
        wait_http(f"{url}/healthz", server)
        planned = await asyncio.to_thread(_cli, url, org, "runs", "create", "-f", str(run_file), "--dry-run")
        assert planned.returncode == 0, planned.stderr
        assert "stage 2 prod" in planned.stdout and "cli-2" in planned.stdout
        follow = subprocess.Popen(
            [sys.executable, "-m", "clusterflow.cli.main", "runs", "create", "-f", str(run_file), "--follow"],
            env=_cli_env(url, org),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follow.stdout is not None
        # What the follower draws, read as it draws it: the gate is approved once it has shown
        # the gate waiting, whatever the machine's load.
        drawn: list[str] = []
        while not any("gate g1 WAITING" in line for line in drawn):
            line = await asyncio.wait_for(asyncio.to_thread(follow.stdout.readline), 60)
            assert line, (
                f"the follower ended before drawing the gate: {drawn} {follow.stderr.read() if follow.stderr else ''}"
            )
            drawn.append(line)
        run_id = next(line.split()[2] for line in drawn if line.startswith("update run "))
        approved = await asyncio.to_thread(_cli, url, org, "runs", "approve", run_id, "g1", "--comment", "ok")
        assert approved.returncode == 0, approved.stderr
        rest, errors = await asyncio.to_thread(follow.communicate, None, 90)
        assert follow.returncode == 0, errors
        followed = "".join(drawn) + rest
        assert f"update run {run_id} accepted" in followed
        assert "stage prod         [####################] 1/1 SUCCEEDED" in followed
        assert "g/cli-2" in followed
        late = await asyncio.to_thread(_cli, url, org, "runs", "pause", run_id)
        assert late.returncode == 5 and "RUN_NOT_ACTIVE" in late.stderr
    finally:
        stop(server)


@pytest.mark.usefixtures("worker")
async def test_saved_strategies_are_reused_by_id_and_runs_keep_their_copy(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    ids = await _deploy(api, org, ["s-1", "s-2"])
    strategy = {
        "stages": [
            {"name": "first", "groups": [{"name": "g", "clusterIds": [ids["s-1"]]}], "afterStageWaitSeconds": 60},
            {"name": "second", "groups": [{"name": "g", "clusterIds": [ids["s-2"]]}]},
        ]
    }
    saved = await api.post(
        "/v1/update-strategies", json={"name": "two-step", "strategy": strategy}, headers=org.headers()
    )
    assert saved.status_code == 201, saved.text
    strategy_id = saved.json()["data"]["id"]
    again = await api.post(
        "/v1/update-strategies", json={"name": "two-step", "strategy": strategy}, headers=org.headers()
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "STRATEGY_NAME_TAKEN"
    listed = (await api.get("/v1/update-strategies", headers=org.headers())).json()["data"]["strategies"]
    assert [(s["id"], s["name"]) for s in listed] == [(strategy_id, "two-step")]

    run = {"name": "by-id", "change": {"kubernetesVersion": "1.32"}, "strategyId": strategy_id}
    plan = await api.post("/v1/update-runs", params={"dryRun": "true"}, json=run, headers=org.headers())
    assert plan.status_code == 200, plan.text
    assert [s["name"] for s in plan.json()["data"]["stages"]] == ["first", "second"]
    both = await api.post(
        "/v1/update-runs", params={"dryRun": "true"}, json=run | {"strategy": strategy}, headers=org.headers()
    )
    assert both.status_code == 422
    unknown = await api.post(
        "/v1/update-runs", params={"dryRun": "true"}, json=run | {"strategyId": "ust_nope"}, headers=org.headers()
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["details"][0]["field"] == "strategyId"

    started = await api.post("/v1/update-runs", json=run, headers=org.headers())
    assert started.status_code == 202, started.text
    run_id = started.json()["data"]["operationId"]
    renamed = strategy | {"stages": strategy["stages"][:1]}
    replaced = await api.put(
        f"/v1/update-strategies/{strategy_id}", json={"name": "one-step", "strategy": renamed}, headers=org.headers()
    )
    assert replaced.status_code == 200 and replaced.json()["data"]["name"] == "one-step"
    assert (await api.delete(f"/v1/update-strategies/{strategy_id}", headers=org.headers())).status_code == 204
    assert (await api.get(f"/v1/update-strategies/{strategy_id}", headers=org.headers())).status_code == 404
    # The run planned from the saved strategy keeps both stages whatever happened to it since.
    view = await _get_run(api, org, run_id)
    assert [s["name"] for s in view["stages"]] == ["first", "second"]
    stored = await pool.fetchval(
        "SELECT request->'strategy'->'stages' FROM update_runs WHERE operation_id = $1", run_id
    )
    assert len(stored) == 2
    cancel = await api.post(f"/v1/update-runs/{run_id}/cancel", headers=org.headers())
    assert cancel.status_code == 200, cancel.text
    assert (await wait_for_operation(api, org.headers(), run_id))["status"] == "CANCELLED"


@pytest.mark.usefixtures("worker")
async def test_pause_holds_new_clusters_resume_continues_and_skip_skips_a_stage(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await _no_approval(api, org)
    ids = await _deploy(api, org, ["p-1", "p-2", "p-3", "later"])
    stages = [
        {"name": "first", "groups": [{"name": "g", "clusterIds": [ids["p-1"], ids["p-2"], ids["p-3"]]}]},
        {"name": "second", "groups": [{"name": "g", "clusterIds": [ids["later"]]}]},
    ]
    response = await api.post("/v1/update-runs", json=_run(stages, phase_seconds=0.2), headers=org.headers())
    run_id = response.json()["data"]["operationId"]
    await _wait_run(api, org, run_id, lambda r: _clusters(r)[ids["p-1"]]["status"] == "RUNNING", "p-1 running")
    paused = await api.post(f"/v1/update-runs/{run_id}/pause", headers=org.headers())
    assert paused.status_code == 200 and paused.json()["data"]["status"] == "PAUSED", paused.text
    twice = await api.post(f"/v1/update-runs/{run_id}/pause", headers=org.headers())
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "RUN_NOT_RUNNING"
    # The running cluster finishes; the next one does not start while the run is paused.
    await _wait_run(api, org, run_id, lambda r: _clusters(r)[ids["p-1"]]["status"] == "SUCCEEDED", "p-1 done")
    await asyncio.sleep(1.0)
    held = await _get_run(api, org, run_id)
    assert held["status"] == "PAUSED" and _clusters(held)[ids["p-2"]]["status"] == "PLANNED", held
    assert len(await _children(pool, run_id)) == 1
    unknown = await api.post(f"/v1/update-runs/{run_id}/skip", json={"stage": "third"}, headers=org.headers())
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "UNKNOWN_STAGE"
    skipped = await api.post(f"/v1/update-runs/{run_id}/skip", json={"stage": "second"}, headers=org.headers())
    assert skipped.status_code == 200, skipped.text
    resumed = await api.post(f"/v1/update-runs/{run_id}/resume", headers=org.headers())
    assert resumed.status_code == 200 and resumed.json()["data"]["status"] == "RUNNING"

    record = await wait_for_operation(api, org.headers(), run_id, timeout=60)
    assert record["status"] == "SUCCEEDED", record
    run = await _get_run(api, org, run_id)
    later = _clusters(run)[ids["later"]]
    assert later["status"] == "SKIPPED" and later["reason"] == "skipped by an operator"
    assert run["stages"][1]["status"] == "SKIPPED"
    assert [c["cluster_id"] for c in sorted(await _children(pool, run_id), key=lambda c: c["started_at"])] == [
        ids["p-1"],
        ids["p-2"],
        ids["p-3"],
    ]
    cluster = (await api.get(f"/v1/clusters/{ids['later']}", headers=org.headers())).json()["data"]
    assert cluster["kubernetesVersion"] == "1.31"


@pytest.mark.usefixtures("worker")
async def test_not_before_gates_wait_for_their_time_and_window(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await _no_approval(api, org)
    ids = await _deploy(api, org, ["t-1", "t-2"])
    opens = datetime.now(UTC) + timedelta(seconds=2)
    always = {"weekdays": ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"], "start": "00:00", "end": "00:00"}
    stages = [
        {
            "name": "timed",
            "beforeGates": [{"type": "notBefore", "at": opens.isoformat()}],
            "groups": [{"name": "g", "clusterIds": [ids["t-1"]]}],
        },
        {
            "name": "windowed",
            "groups": [
                {
                    "name": "g",
                    "clusterIds": [ids["t-2"]],
                    "beforeGates": [{"type": "notBefore", "window": always | {"timeZone": "Europe/Berlin"}}],
                }
            ],
        },
    ]
    response = await api.post("/v1/update-runs", json=_run(stages, phase_seconds=0.05), headers=org.headers())
    assert response.status_code == 202, response.text
    run_id = response.json()["data"]["operationId"]
    record = await wait_for_operation(api, org.headers(), run_id, timeout=60)
    assert record["status"] == "SUCCEEDED", record
    started = {c["cluster_id"]: c["started_at"] for c in await _children(pool, run_id)}
    assert started[ids["t-1"]] >= opens
    run = await _get_run(api, org, run_id)
    timed = run["stages"][0]["beforeGates"][0]
    assert timed["status"] == "PASSED" and datetime.fromisoformat(timed["opensAt"]) == opens
    windowed = run["stages"][1]["groups"][0]["beforeGates"][0]
    assert windowed["status"] == "PASSED" and windowed["opensAt"] is not None


# --- the strategy's arithmetic, as a user reads it -------------------------------------------


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # Saturday 22:00 to Sunday 04:00 Berlin time (UTC+1 in November).
        ("2026-11-24T06:00:00+00:00", "2026-11-28T21:00:00+00:00"),  # Tuesday: the next Saturday evening
        ("2026-11-29T01:00:00+00:00", "2026-11-29T01:00:00+00:00"),  # inside the window past midnight: now
        ("2026-11-29T03:00:00+00:00", "2026-12-05T21:00:00+00:00"),  # just after it closed: a week later
    ],
)
def test_a_maintenance_window_opens_at_its_next_start_or_now_inside_it(after: str, expected: str) -> None:
    window = MaintenanceWindow(("SAT",), "22:00", "04:00", "Europe/Berlin")
    assert window.next_opening(datetime.fromisoformat(after)) == datetime.fromisoformat(expected)


def test_concurrency_and_failure_thresholds_resolve_against_the_group_and_stage() -> None:
    assert Concurrency(50, percent=True).resolve(2) == 1
    assert Concurrency(25, percent=True).resolve(10) == 2
    assert Concurrency(1, percent=True).resolve(3) == 1  # at least one
    assert Concurrency(2).resolve(30) == 2
    assert FailurePolicy(10, percent=True).threshold(30) == 3
    assert FailurePolicy(0).threshold(30) == 0
    plan = RunPlan(
        stages=(
            PlannedStage("s", (PlannedGroup("g", ("cl_1",), 1, (Gate("g1", GateKind.APPROVAL, GateTiming.AFTER),)),)),
        )
    )
    assert plan_from_json(json.loads(json.dumps(asdict(plan)))) == plan


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"), reason="no /usr/bin/chromium")
async def test_the_console_run_page_shows_stages_as_columns_and_an_owner_approves_its_gate(
    settings: Settings, worker: None, org: Org, pool: asyncpg.Pool
) -> None:
    from playwright.async_api import async_playwright, expect

    from tests.live import live_api

    async with live_api(settings) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        await _no_approval(api, org)
        ids = await _deploy(api, org, ["web-1", "web-2", "web-3"])
        stages = [
            {"name": "dev", "groups": [{"name": "g", "clusterIds": [ids["web-1"]]}]},
            {
                "name": "prod",
                "beforeGates": [{"type": "approval", "name": "go-live"}],
                "groups": [{"name": "eu", "clusterIds": [ids["web-2"], ids["web-3"]], "maxConcurrency": 2}],
            },
        ]
        response = await api.post("/v1/update-runs", json=_run(stages, phase_seconds=0.2), headers=org.headers())
        run_id = response.json()["data"]["operationId"]
        _, viewer_key = await create_api_key(pool, org.id, "viewer", "viewer")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                pages = []
                for key in (org.owner_key, viewer_key):
                    context = await browser.new_context(viewport={"width": 1280, "height": 860})
                    page = await context.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
                    await page.goto(f"{live.url}/console")
                    await page.get_by_label("API key").fill(key)
                    await page.get_by_role("button", name="Sign in").click()
                    await page.get_by_role("link", name="Update runs").click()
                    await page.get_by_role("link", name="monthly-1.32").click()
                    pages.append((page, errors))
                owner, viewer = pages[0][0], pages[1][0]
                await expect(owner.get_by_role("heading", name="Update run monthly-1.32")).to_be_visible()
                await expect(owner.get_by_role("region", name="stage dev")).to_be_visible()
                await expect(owner.get_by_role("region", name="stage prod")).to_be_visible()
                approve = owner.get_by_role("button", name="Approve g1")
                await expect(approve).to_be_enabled(timeout=30_000)
                await expect(viewer.get_by_role("button", name="Approve g1")).to_be_disabled()
                await expect(owner.get_by_role("progressbar", name="cluster web-1")).to_have_attribute(
                    "aria-valuenow", "100"
                )
                await approve.click()
                for name in ("web-2", "web-3"):
                    await expect(owner.get_by_role("progressbar", name=f"cluster {name}")).to_have_attribute(
                        "aria-valuenow", "100", timeout=30_000
                    )
                await expect(owner.get_by_role("region", name="stage prod").locator(".badge").first).to_have_text(
                    "SUCCEEDED", timeout=30_000
                )
                ARTIFACTS = Path(__file__).resolve().parents[2] / ".clusterflow" / "artifacts" / "console"
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await owner.screenshot(path=str(ARTIFACTS / "update-run.png"), full_page=True)
                assert "null" not in await owner.locator("#view").inner_text()
                assert pages[0][1] == [] and pages[1][1] == []
            finally:
                await browser.close()
        record = await wait_for_operation(api, org.headers(), run_id)
        assert record["status"] == "SUCCEEDED"
        run = await _get_run(api, org, run_id)
        assert run["stages"][1]["beforeGates"][0]["decidedBy"]
