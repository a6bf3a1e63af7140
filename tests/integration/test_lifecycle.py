"""Operators' control of cluster operations: delete, update, cancel, approve, one at a time.

All on real Temporal and PostgreSQL with the real worker; the `local` provider's simulated
cloud is inspected to prove what was created, changed and removed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from clusterflow.records import local_cloud
from clusterflow.records.organizations import create_api_key
from tests.conftest import Org
from tests.helpers import all_events, deploy_document, wait_for_operation

pytestmark = pytest.mark.usefixtures("worker")


async def deploy(api: httpx.AsyncClient, org: Org, name: str, **local: Any) -> dict[str, Any]:
    response = await api.post("/v1/clusters", json=deploy_document(name, **local), headers=org.headers())
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()["data"]
    if not local.get("phaseSeconds"):
        record = await wait_for_operation(api, org.headers(), accepted["operationId"])
        assert record["status"] == "SUCCEEDED", record
    return accepted


async def set_policy(api: httpx.AsyncClient, org: Org, **policy: bool) -> None:
    response = await api.put(f"/v1/organizations/{org.id}/approval-policy", json=policy, headers=org.headers())
    assert response.status_code == 200, response.text


async def live_resources(pool: asyncpg.Pool, cluster_id: str) -> set[tuple[str, str]]:
    return {(r.kind, r.name) for r in await local_cloud.list_resources(pool, cluster_id, live_only=True)}


async def update_events(client: Client, operation_id: str) -> list[Any]:
    history = await client.get_workflow_handle(operation_id).fetch_history()
    kinds = {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
    }
    return [e for e in history.events if e.event_type in kinds]


# --- delete and approval ------------------------------------------------------------------


async def test_delete_waits_for_an_owner_then_tears_down_in_reverse_order(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    cluster = await deploy(api, org, "doomed")
    response = await api.delete(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    assert accepted["approvalRequired"] is True and accepted["approvalToken"].startswith("cfa_")
    waiting = await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
    assert waiting["isApprovable"] is True and waiting["approval"]["requiredRole"] == "owner"
    assert await live_resources(pool, cluster["clusterId"])  # nothing removed before the decision

    decision = await api.post(
        f"/v1/operations/{accepted['operationId']}/approval",
        json={"action": "APPROVE", "token": accepted["approvalToken"], "comment": "decommissioned"},
        headers=org.headers(),
    )
    assert decision.status_code == 200, decision.text
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", record
    assert record["approval"]["decision"] == "APPROVE" and record["approval"]["comment"] == "decommissioned"
    assert record["approval"]["decidedBy"] and record["approval"]["decidedAt"]
    assert await live_resources(pool, cluster["clusterId"]) == set()

    deletes = [c.kind for c in await local_cloud.api_calls(pool, cluster["clusterId"]) if c.action == "delete"]
    order = ["addon", "node_group", "control_plane", "subnet", "network"]
    assert sorted(set(deletes), key=order.index) == order
    assert deletes == sorted(deletes, key=order.index)

    view = (await api.get(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "DELETED" and view["deletedTimestamp"]
    assert (await api.get("/v1/clusters", headers=org.headers())).json()["data"] == []
    history = (await api.get(f"/v1/clusters/{cluster['clusterId']}/operations", headers=org.headers())).json()
    assert [o["operationType"] for o in history["data"]["operations"]] == ["CLUSTER_DELETE", "CLUSTER_DEPLOY"]
    again = await api.delete(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())
    assert again.status_code == 409 and again.json()["error"]["code"] == "CLUSTER_DELETED"
    # The name is free again.
    assert (await api.post("/v1/clusters", json=deploy_document("doomed"), headers=org.headers())).status_code == 202


async def test_wrong_token_and_low_roles_are_refused_and_never_reach_the_history(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client
) -> None:
    cluster = await deploy(api, org, "guarded")
    accepted = (await api.delete(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
    url = f"/v1/operations/{accepted['operationId']}/approval"

    wrong = await api.post(url, json={"action": "APPROVE", "token": "cfa_guess"}, headers=org.headers())
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "INVALID_APPROVAL_TOKEN"
    for role in ("viewer", "editor", "admin"):
        _, key = await create_api_key(pool, org.id, role, role)
        refused = await api.post(
            url, json={"action": "APPROVE", "token": accepted["approvalToken"]}, headers=org.headers(key)
        )
        assert refused.status_code == 403, (role, refused.text)
    assert await update_events(temporal_client, accepted["operationId"]) == []
    record = (await api.get(f"/v1/operations/{accepted['operationId']}", headers=org.headers())).json()["data"]
    assert record["status"] == "AWAITING_APPROVAL"

    reject = await api.post(
        url, json={"action": "REJECT", "token": accepted["approvalToken"], "comment": "not yet"}, headers=org.headers()
    )
    assert reject.status_code == 200 and reject.json()["data"]["status"] == "REJECTED"
    assert len(await update_events(temporal_client, accepted["operationId"])) == 1
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "REJECTED" and record["approval"]["decision"] == "REJECT"
    view = (await api.get(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "ACTIVE" and await live_resources(pool, cluster["clusterId"])
    late = await api.post(url, json={"action": "APPROVE", "token": accepted["approvalToken"]}, headers=org.headers())
    assert late.status_code == 409


@pytest.mark.parametrize("settings", [{"approval_window_seconds": 1.0}], indirect=True)
async def test_an_unanswered_approval_expires_and_rejects_the_operation(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    cluster = await deploy(api, org, "patient")
    accepted = (await api.delete(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    record = await wait_for_operation(api, org.headers(), accepted["operationId"], timeout=30)
    assert record["status"] == "REJECTED"
    assert record["approval"]["decision"] == "EXPIRED"
    assert await live_resources(pool, cluster["clusterId"])
    late = await api.post(
        f"/v1/operations/{accepted['operationId']}/approval",
        json={"action": "APPROVE", "token": accepted["approvalToken"]},
        headers=org.headers(),
    )
    assert late.status_code == 409


async def test_the_reference_approval_route_decides_by_cluster_name(api: httpx.AsyncClient, org: Org) -> None:
    cluster = await deploy(api, org, "by-name")
    accepted = (await api.delete(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
    response = await api.post(
        f"/v1/organizations/{org.id}/clusters/by-name/approval",
        params={"token": accepted["approvalToken"], "action": "APPROVE"},
        headers=org.headers(),
    )
    assert response.status_code == 200, response.text
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED"
    other = await api.post(
        "/v1/organizations/org_other/clusters/by-name/approval",
        params={"token": "x", "action": "APPROVE"},
        headers=org.headers(),
    )
    assert other.status_code == 404


async def test_delete_preempts_a_stuck_deploy(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    await set_policy(api, org, clusterDelete=False)
    stuck = await deploy(api, org, "stuck", phaseSeconds=30)
    await wait_for_operation(api, org.headers(), stuck["operationId"], until={"RUNNING"})
    for _ in range(200):
        if await live_resources(pool, stuck["clusterId"]):
            break
        await asyncio.sleep(0.05)
    response = await api.delete(f"/v1/clusters/{stuck['clusterId']}", headers=org.headers())
    assert response.status_code == 202, response.text
    assert "approvalToken" not in response.json()["data"]
    deleted = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"], timeout=90)
    assert deleted["status"] == "SUCCEEDED", deleted
    deploy_record = (await api.get(f"/v1/operations/{stuck['operationId']}", headers=org.headers())).json()["data"]
    assert deploy_record["status"] == "CANCELLED"
    assert await live_resources(pool, stuck["clusterId"]) == set()
    view = (await api.get(f"/v1/clusters/{stuck['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "DELETED"


# --- cancel -------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["VALIDATE", "NETWORK", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"])
async def test_cancel_during_each_deploy_phase_leaves_nothing_behind(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client, phase: str
) -> None:
    cluster = await deploy(api, org, f"cancel-{phase.lower().replace('_', '-')}", phaseSeconds=0.5)
    for _ in range(600):
        record = (await api.get(f"/v1/operations/{cluster['operationId']}", headers=org.headers())).json()["data"]
        if record["currentPhase"] == phase:
            break
        await asyncio.sleep(0.02)
    assert record["currentPhase"] == phase and record["status"] == "RUNNING"
    response = await api.post(f"/v1/clusters/{cluster['clusterId']}/cancel", headers=org.headers())
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "CANCELLING"
    record = await wait_for_operation(api, org.headers(), cluster["operationId"])
    assert record["status"] == "CANCELLED", record
    assert record["metadata"]["leftBehind"] == [], record
    assert record["cancellation"]["requestedBy"] and record["cancellation"]["forced"] is False
    assert record["metadata"]["leftBehind"] == []
    created = {
        f"{c.kind}/{c.name}" for c in await local_cloud.api_calls(pool, cluster["clusterId"]) if c.action == "create"
    }
    assert set(record["metadata"]["cleanedUp"]) == created
    assert await live_resources(pool, cluster["clusterId"]) == set()
    view = (await api.get(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "DELETED"
    events = await all_events(api, org.headers(), cluster["operationId"])
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    # The record ends first; the execution closes on the workflow's next task.
    for _ in range(100):
        description = await temporal_client.get_workflow_handle(cluster["operationId"]).describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0.05)
    assert description.status == WorkflowExecutionStatus.CANCELED


async def test_cancelling_a_finished_operation_is_a_409(api: httpx.AsyncClient, org: Org) -> None:
    cluster = await deploy(api, org, "done")
    response = await api.post(f"/v1/operations/{cluster['operationId']}/cancel", headers=org.headers())
    assert response.status_code == 409 and response.json()["error"]["code"] == "OPERATION_FINISHED"
    response = await api.post(f"/v1/clusters/{cluster['clusterId']}/cancel", headers=org.headers())
    assert response.status_code == 409 and response.json()["error"]["code"] == "NO_ACTIVE_OPERATION"


@pytest.mark.parametrize("settings", [{"force_cancel_grace_seconds": 0.3}], indirect=True)
async def test_force_cancel_needs_admin_and_terminates_a_slow_cleanup(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client
) -> None:
    cluster = await deploy(api, org, "slow-cleanup", phaseSeconds=6)
    await wait_for_operation(api, org.headers(), cluster["operationId"], until={"RUNNING"})
    _, editor = await create_api_key(pool, org.id, "editor", "editor")
    refused = await api.post(f"/v1/operations/{cluster['operationId']}/cancel?force=true", headers=org.headers(editor))
    assert refused.status_code == 403
    for _ in range(200):  # let the deploy create something, so its cleanup has work to do
        if await live_resources(pool, cluster["clusterId"]):
            break
        await asyncio.sleep(0.05)
    response = await api.post(f"/v1/operations/{cluster['operationId']}/cancel?force=true", headers=org.headers())
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {
        "operationId": cluster["operationId"],
        "status": "CANCELLED",
        "forced": True,
        "terminated": True,
    }
    record = (await api.get(f"/v1/operations/{cluster['operationId']}", headers=org.headers())).json()["data"]
    assert record["status"] == "CANCELLED" and record["metadata"]["forced"] is True
    assert record["cancellation"]["forced"] is True
    assert "cleanup may be incomplete" in record["message"]
    for _ in range(100):
        description = await temporal_client.get_workflow_handle(cluster["operationId"]).describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0.05)
    assert description.status == WorkflowExecutionStatus.TERMINATED


# --- update -------------------------------------------------------------------------------


def update_document(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "clusterflow.dev/v1", "kind": "K8sClusterUpdate", "spec": spec}


def groups_with(**changes: Any) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = deploy_document()["spec"]["clusterSpec"]["dataPlane"]["nodeGroups"]
    groups[0].update(changes)
    return groups


async def test_dry_run_and_report_plan_without_enqueuing(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    cluster = await deploy(api, org, "planned")
    extra = {"name": "gpu", "machineTypes": ["xlarge"], "minNode": 0, "maxNode": 2}
    doc = update_document(
        kubernetesVersion="1.32",
        nodeGroups=[*groups_with(maxNode=6), extra],
        updateConfig={"dryRun": True, "generateReport": True, "maxSurge": "2", "maxUnavailable": "0"},
    )
    response = await api.patch(f"/v1/clusters/{cluster['clusterId']}", json=doc, headers=org.headers())
    assert response.status_code == 200, response.text
    preview = response.json()["data"]
    assert preview["validationPassed"] is True
    plan = preview["upgradePlan"]
    assert [p["name"] for p in plan["phases"]] == ["VALIDATE", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"]
    pools = {(p["name"], p["changeType"]) for p in plan["phases"][2]["nodePools"]}
    assert {("workers", "RESIZE"), ("gpu", "ADD"), ("workers", "UPGRADE"), ("batch", "UPGRADE")} <= pools
    assert plan["rollingStrategy"]["maxSurge"] == "2" and plan["currentVersion"] == "1.31"
    report = preview["upgradeReport"]
    assert report["versionAnalysis"]["upgradeType"] == "MINOR" and report["versionAnalysis"]["skippedVersions"] == []
    assert 0 <= report["readinessScore"] <= 100 and report["riskLevel"] in {"LOW", "MEDIUM", "HIGH"}
    assert all(c["status"] in {"PASS", "WARN"} for c in preview["preflightChecks"])
    assert preview["planHash"].startswith("plan_")
    ops = (await api.get(f"/v1/clusters/{cluster['clusterId']}/operations", headers=org.headers())).json()["data"]
    assert ops["totalCount"] == 1


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        ({"kubernetesVersion": "1.33"}, "version-skew"),
        ({"kubernetesVersion": "1.30"}, "no-downgrade"),
    ],
)
async def test_skipping_minor_versions_or_downgrading_is_refused_with_a_reason(
    api: httpx.AsyncClient, org: Org, spec: dict[str, Any], check: str
) -> None:
    cluster = await deploy(api, org, "strict")
    dry = await api.patch(
        f"/v1/clusters/{cluster['clusterId']}",
        json=update_document(**spec, updateConfig={"dryRun": True}),
        headers=org.headers(),
    )
    preview = dry.json()["data"]
    assert dry.status_code == 200 and preview["validationPassed"] is False
    failed = {c["name"]: c for c in preview["preflightChecks"] if c["status"] == "FAIL"}
    assert check in failed and failed[check]["remediation"]
    real = await api.patch(f"/v1/clusters/{cluster['clusterId']}", json=update_document(**spec), headers=org.headers())
    assert real.status_code == 422 and real.json()["error"]["code"] == "UPDATE_REFUSED"
    assert check in real.json()["message"]
    ops = (await api.get(f"/v1/clusters/{cluster['clusterId']}/operations", headers=org.headers())).json()["data"]
    assert ops["totalCount"] == 1


async def test_downgrade_is_allowed_when_asked_for(api: httpx.AsyncClient, org: Org) -> None:
    cluster = await deploy(api, org, "rollback-ok")
    doc = update_document(kubernetesVersion="1.30", updateConfig={"allowDowngrade": True})
    response = await api.patch(f"/v1/clusters/{cluster['clusterId']}", json=doc, headers=org.headers())
    assert response.status_code == 202, response.text
    record = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"])
    assert record["status"] == "SUCCEEDED"


async def test_minor_upgrade_waits_for_approval_and_updates_the_cluster(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    cluster = await deploy(api, org, "upgrade-me")
    doc = update_document(kubernetesVersion="1.32", nodeGroups=groups_with(maxNode=6), tags={"team": "core"})
    dry = await api.patch(
        f"/v1/clusters/{cluster['clusterId']}",
        json={**doc, "spec": {**doc["spec"], "updateConfig": {"dryRun": True}}},
        headers=org.headers(),
    )
    reviewed_plan = dry.json()["data"]["planHash"]
    response = await api.patch(f"/v1/clusters/{cluster['clusterId']}", json=doc, headers=org.headers())
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    assert accepted["approvalRequired"] is True
    waiting = await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
    assert waiting["approval"]["planHash"] == reviewed_plan
    url = f"/v1/operations/{accepted['operationId']}/approval"
    stale = await api.post(
        url,
        json={"action": "APPROVE", "token": accepted["approvalToken"], "planHash": "plan_old"},
        headers=org.headers(),
    )
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "APPROVAL_PLAN_CHANGED"
    ok = await api.post(
        url,
        json={"action": "APPROVE", "token": accepted["approvalToken"], "planHash": reviewed_plan},
        headers=org.headers(),
    )
    assert ok.status_code == 200, ok.text
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", record
    phases = [
        e["phase"]
        for e in await all_events(api, org.headers(), accepted["operationId"])
        if e["kind"] == "phase" and e["message"].endswith("started")
    ]
    assert phases == ["VALIDATE", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"]
    view = (await api.get(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "ACTIVE" and view["kubernetesVersion"] == "1.32"
    assert view["workerNodes"][0]["maxNode"] == 6
    assert view["upgradeStatus"]["status"] == "COMPLETED" and view["upgradeStatus"]["completedAt"]
    resources = {(r.kind, r.name): r.spec for r in await local_cloud.list_resources(pool, cluster["clusterId"])}
    assert resources[("control_plane", "control-plane")]["kubernetesVersion"] == "1.32"
    assert resources[("node_group", "workers")]["maxNode"] == 6


async def test_a_failed_update_rolls_back_and_says_so(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    await set_policy(api, org, minorVersionUpgrade=False)
    cluster = await deploy(api, org, "fragile")
    extra = {"name": "extra", "machineTypes": ["small"], "minNode": 1, "maxNode": 1}
    doc = update_document(
        kubernetesVersion="1.32",
        nodeGroups=[*groups_with(), extra],
        local={"failAt": "ADDONS"},
    )
    response = await api.patch(f"/v1/clusters/{cluster['clusterId']}", json=doc, headers=org.headers())
    assert response.status_code == 202, response.text
    record = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"])
    assert record["status"] == "FAILED" and record["error"]["code"] == "SIMULATED_FAILURE"
    view = (await api.get(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    # Node groups come back; the control plane stays where it got to, as on a cloud, and the
    # record says so rather than claiming a downgrade.
    assert view["state"] == "ACTIVE" and view["kubernetesVersion"] == "1.32"
    assert [g["name"] for g in view["workerNodes"]] == [g["name"] for g in groups_with()]
    assert view["upgradeStatus"]["status"] == "FAILED"
    rollback = view["rollbackStatus"]
    assert rollback["status"] == "COMPLETED" and "ADDONS" in rollback["reason"]
    assert rollback["controlPlaneVersion"] == "1.32"
    assert "remove extra" in rollback["restored"]
    assert any("control plane stays on 1.32" in item for item in rollback["notRestored"])
    assert record["metadata"]["cleanedUp"] == rollback["restored"]
    assert record["metadata"]["leftBehind"] == rollback["notRestored"]
    live = await live_resources(pool, cluster["clusterId"])
    assert ("node_group", "extra") not in live
    specs = {(r.kind, r.name): r.spec for r in await local_cloud.list_resources(pool, cluster["clusterId"])}
    assert specs[("control_plane", "control-plane")]["kubernetesVersion"] == "1.32"
    events = await all_events(api, org.headers(), response.json()["data"]["operationId"])
    assert any(e["message"] == "NODE_GROUPS rollback started" for e in events)


async def test_an_update_cancelled_in_node_groups_restores_them_and_keeps_the_version_reached(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    await set_policy(api, org, minorVersionUpgrade=False)
    cluster = await deploy(api, org, "cancel-update")
    before = {r.name: r.spec for r in await local_cloud.list_resources(pool, cluster["clusterId"], True)}
    extra = {"name": "extra", "machineTypes": ["small"], "minNode": 1, "maxNode": 1}
    doc = update_document(
        kubernetesVersion="1.32", nodeGroups=[*groups_with(maxNode=6), extra], local={"phaseSeconds": 1.5}
    )
    response = await api.patch(f"/v1/clusters/{cluster['clusterId']}", json=doc, headers=org.headers())
    assert response.status_code == 202, response.text
    operation_id = response.json()["data"]["operationId"]
    for _ in range(400):
        events = await all_events(api, org.headers(), operation_id)
        if any(e["phase"] == "NODE_GROUPS" for e in events):
            break
        await asyncio.sleep(0.05)
    cancel = await api.post(f"/v1/operations/{operation_id}/cancel", headers=org.headers())
    assert cancel.status_code == 200, cancel.text
    record = await wait_for_operation(api, org.headers(), operation_id)
    assert record["status"] == "CANCELLED", record

    # The simulated cloud holds the groups as they were; the control plane stays on 1.32.
    after = {r.name: r.spec for r in await local_cloud.list_resources(pool, cluster["clusterId"], True)}
    assert "extra" not in after
    workers = groups_with()[0]["name"]
    assert (after[workers]["minNode"], after[workers]["maxNode"]) == (
        before[workers]["minNode"],
        before[workers]["maxNode"],
    )
    assert after["control-plane"]["kubernetesVersion"] == "1.32"
    view = (await api.get(f"/v1/clusters/{cluster['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "ACTIVE" and view["kubernetesVersion"] == "1.32"
    assert [(g["name"], g["minNode"], g["maxNode"]) for g in view["workerNodes"]] == [
        (g["name"], g["minNode"], g["maxNode"]) for g in groups_with()
    ]
    assert view["rollbackStatus"]["status"] == "COMPLETED"
    assert view["upgradeStatus"]["status"] == "CANCELLED"
    assert "remove extra" in record["metadata"]["cleanedUp"]
    assert any("control plane stays on 1.32" in item for item in record["metadata"]["leftBehind"])


# --- one at a time, safe retries -------------------------------------------------------------


async def test_a_hundred_concurrent_conflicting_requests_yield_exactly_one_operation(
    api: httpx.AsyncClient, org: Org
) -> None:
    await set_policy(api, org, clusterUpdate=False)
    cluster = await deploy(api, org, "contended")
    responses = await asyncio.gather(
        *(
            api.patch(
                f"/v1/clusters/{cluster['clusterId']}", json=update_document(tags={"n": str(i)}), headers=org.headers()
            )
            for i in range(100)
        )
    )
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 1, codes
    assert codes.count(409) == 99
    winner = next(r for r in responses if r.status_code == 202).json()["data"]["operationId"]
    busy = [r.json() for r in responses if r.status_code == 409]
    assert {b["error"]["details"]["activeOperationId"] for b in busy} == {winner}
    assert all(winner in b["message"] for b in busy)
    await wait_for_operation(api, org.headers(), winner)


async def test_idempotent_delete_replays_without_the_token(api: httpx.AsyncClient, org: Org) -> None:
    cluster = await deploy(api, org, "twice")
    headers = org.headers() | {"Idempotency-Key": "delete-twice"}
    first = await api.delete(f"/v1/clusters/{cluster['clusterId']}", headers=headers)
    second = await api.delete(f"/v1/clusters/{cluster['clusterId']}", headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["data"]["operationId"] == second.json()["data"]["operationId"]
    assert "approvalToken" in first.json()["data"] and "approvalToken" not in second.json()["data"]
    other = await api.patch(
        f"/v1/clusters/{cluster['clusterId']}", json=update_document(tags={"a": "b"}), headers=headers
    )
    assert other.status_code == 422 and other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    await api.post(f"/v1/operations/{first.json()['data']['operationId']}/cancel", headers=org.headers())
