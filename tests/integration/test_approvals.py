"""Approvals for a team (issue 17), through the public API on real Temporal and PostgreSQL.

Any owner decides without a token; four eyes keeps the requester out; N approvals need N
distinct owners; the rules an operation waits under are fixed when it is accepted. Refused
attempts never reach the workflow history, every decision and refusal is in the audit log, and
the `local` provider's simulated cloud shows whether the delete really ran.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from clusterflow.records import local_cloud
from clusterflow.records.organizations import create_api_key
from tests.conftest import Org
from tests.helpers import deploy_document, wait_for_operation

pytestmark = pytest.mark.usefixtures("worker")


async def deployed(api: httpx.AsyncClient, org: Org, name: str, labels: dict[str, str] | None = None) -> str:
    document = deploy_document(name)
    if labels is not None:
        document["metadata"] = {"labels": labels}
    response = await api.post("/v1/clusters", json=document, headers=org.headers())
    assert response.status_code == 202, response.text
    record = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"])
    assert record["status"] == "SUCCEEDED", record
    return str(response.json()["data"]["clusterId"])


async def put_policy(api: httpx.AsyncClient, org: Org, **policy: Any) -> dict[str, Any]:
    response = await api.put(f"/v1/organizations/{org.id}/approval-policy", json=policy, headers=org.headers())
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


async def live(pool: asyncpg.Pool, cluster_id: str) -> set[tuple[str, str]]:
    return {(r.kind, r.name) for r in await local_cloud.list_resources(pool, cluster_id, live_only=True)}


async def update_events(client: Client, operation_id: str) -> int:
    """Updates that entered the workflow's history (a refused one never does)."""
    history = await client.get_workflow_handle(operation_id).fetch_history()
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    return sum(1 for e in history.events if e.event_type == accepted)


async def approval_writes(pool: asyncpg.Pool, operation_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The decisions on the operation's row and its approval events, read from the database."""
    received = await pool.fetchval("SELECT approval_received FROM operations WHERE id = $1", operation_id)
    events = await pool.fetch(
        "SELECT event_key FROM operation_events WHERE operation_id = $1 AND event_key LIKE 'approval/%'",
        operation_id,
    )
    return list(received or []), [e["event_key"] for e in events]


async def key(pool: asyncpg.Pool, org: Org, role: str, name: str) -> str:
    return (await create_api_key(pool, org.id, name, role))[1]


async def delete(api: httpx.AsyncClient, org: Org, cluster_id: str, requester: str) -> dict[str, Any]:
    response = await api.delete(f"/v1/clusters/{cluster_id}", headers=org.headers(requester))
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()["data"]
    await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
    return accepted


async def decide(
    api: httpx.AsyncClient, org: Org, operation_id: str, owner: str, action: str = "APPROVE", **body: Any
) -> httpx.Response:
    return await api.post(
        f"/v1/operations/{operation_id}/approval", json={"action": action, **body}, headers=org.headers(owner)
    )


async def audit(api: httpx.AsyncClient, org: Org, want: int, **filters: str) -> list[dict[str, Any]]:
    """Audit events matching `filters`, once at least `want` are written (the writer is behind)."""
    deadline = time.monotonic() + 10
    while True:
        page = await api.get("/v1/audit/events", params={"pageSize": 100, **filters}, headers=org.headers())
        assert page.status_code == 200, page.text
        events: list[dict[str, Any]] = page.json()["data"]["events"]
        if len(events) >= want or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.1)


async def test_an_editors_delete_is_approved_by_another_owner_without_a_token(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    cluster_id = await deployed(api, org, "team-delete")
    editor = await key(pool, org, "editor", "editor")
    response = await api.delete(f"/v1/clusters/{cluster_id}", headers=org.headers(editor))
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    assert accepted["approvalRequired"] is True and "approvalToken" not in accepted
    waiting = await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
    assert waiting["approval"]["required"] == 1 and waiting["approval"]["remaining"] == 1
    assert waiting["approval"]["received"] == [] and waiting["approval"]["rule"] == {
        "name": "default",
        "labelSelector": None,
    }

    # The editor cannot decide; another owner can, with their own key and no token.
    refused = await decide(api, org, accepted["operationId"], editor)
    assert refused.status_code == 403
    approved = await decide(api, org, accepted["operationId"], org.owner_key, comment="decommissioned")
    assert approved.status_code == 200, approved.text
    assert approved.json()["data"] == {
        "operationId": accepted["operationId"],
        "status": "RUNNING",
        "decision": "APPROVE",
        "remaining": 0,
    }
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    assert record["status"] == "SUCCEEDED", record
    approval = record["approval"]
    assert approval["decision"] == "APPROVE" and approval["comment"] == "decommissioned"
    assert [(r["decision"], r["comment"]) for r in approval["received"]] == [("APPROVE", "decommissioned")]
    assert approval["received"][0]["by"] == approval["decidedBy"] and approval["received"][0]["at"]
    assert approval["remaining"] == 0
    assert await live(pool, cluster_id) == set()  # the delete really ran

    events = await audit(api, org, 2, action="DECIDE")
    assert any(e["success"] and e["resource_id"] == accepted["operationId"] for e in events), events
    denied = await audit(api, org, 1, action="ACCESS_DENIED")
    assert any(e["details"].get("path", "").endswith("/approval") for e in denied), denied


async def test_under_four_eyes_the_requesting_owner_is_refused_and_another_owner_decides(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client
) -> None:
    cluster_id = await deployed(api, org, "four-eyes")
    policy = await put_policy(api, org, requireDifferentApprover=True)
    assert policy["requireDifferentApprover"] is True and policy["approvalsRequired"] == 1
    requester = await key(pool, org, "owner", "requesting owner")
    response = await api.delete(f"/v1/clusters/{cluster_id}", headers=org.headers(requester))
    accepted = response.json()["data"]
    assert "approvalToken" not in accepted  # the requester may not decide, so no token either
    waiting = await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
    assert waiting["approval"]["requireDifferentApprover"] is True

    own = await decide(api, org, accepted["operationId"], requester)
    assert own.status_code == 403 and own.json()["error"]["code"] == "APPROVER_IS_REQUESTER", own.text
    own_reject = await decide(api, org, accepted["operationId"], requester, "REJECT")
    assert own_reject.status_code == 403
    assert await update_events(temporal_client, accepted["operationId"]) == 0
    # The API drafts the decision's record while the Update is in flight: a refused decision
    # leaves nothing of it in the database.
    assert await approval_writes(pool, accepted["operationId"]) == ([], [])
    # What each owner may decide: not the requester's own operation.
    mine = (await api.get("/v1/approvals", headers=org.headers(requester))).json()["data"]
    assert [o["operationId"] for o in mine["operations"]] == []
    theirs = (await api.get("/v1/approvals", headers=org.headers())).json()["data"]
    assert [o["operationId"] for o in theirs["operations"]] == [accepted["operationId"]]
    assert await live(pool, cluster_id)

    other = await decide(api, org, accepted["operationId"], org.owner_key)
    assert other.status_code == 200, other.text
    received, events = await approval_writes(pool, accepted["operationId"])  # at once, with the answer
    assert [r["decision"] for r in received] == ["APPROVE"] and len(events) == 1, (received, events)
    record = await wait_for_operation(api, org.headers(), accepted["operationId"])
    received, events = await approval_writes(pool, accepted["operationId"])
    assert len(received) == 1 and len(events) == 1  # the API's write and the workflow's are one
    assert record["status"] == "SUCCEEDED" and await live(pool, cluster_id) == set()
    refusals = await audit(api, org, 2, action="ACCESS_DENIED")
    assert [e["details"].get("errorCode") for e in refusals].count("APPROVER_IS_REQUESTER") == 2, refusals


async def test_two_approvals_need_two_distinct_owners_and_one_rejection_ends_it(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client
) -> None:
    first, second = await deployed(api, org, "two-owners"), await deployed(api, org, "two-owners-rejected")
    await put_policy(api, org, approvalsRequired=2)
    editor = await key(pool, org, "editor", "editor")
    alice, bob = await key(pool, org, "owner", "alice"), await key(pool, org, "owner", "bob")
    accepted = await delete(api, org, first, editor)
    operation_id = accepted["operationId"]

    once = await decide(api, org, operation_id, alice, comment="looks right")
    assert once.status_code == 200, once.text
    assert once.json()["data"]["status"] == "AWAITING_APPROVAL" and once.json()["data"]["remaining"] == 1
    record = (await api.get(f"/v1/operations/{operation_id}", headers=org.headers())).json()["data"]
    assert record["status"] == "AWAITING_APPROVAL", record
    assert record["approval"]["required"] == 2 and record["approval"]["remaining"] == 1
    assert [(r["decision"], r["comment"]) for r in record["approval"]["received"]] == [("APPROVE", "looks right")]
    twice = await decide(api, org, operation_id, alice)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "ALREADY_DECIDED", twice.text
    assert await update_events(temporal_client, operation_id) == 1
    # Alice has decided, so it is no longer hers to decide; Bob still may.
    assert (await api.get("/v1/approvals", headers=org.headers(alice))).json()["data"]["operations"] == []
    bobs = (await api.get("/v1/approvals", headers=org.headers(bob))).json()["data"]["operations"]
    assert [o["operationId"] for o in bobs] == [operation_id]
    await asyncio.sleep(0.5)
    assert await live(pool, first)  # one approval of two: nothing removed

    done = await decide(api, org, operation_id, bob, comment="agreed")
    assert done.status_code == 200 and done.json()["data"]["status"] == "RUNNING", done.text
    record = await wait_for_operation(api, org.headers(), operation_id)
    assert record["status"] == "SUCCEEDED", record
    received = record["approval"]["received"]
    assert [(r["decision"], r["comment"]) for r in received] == [("APPROVE", "looks right"), ("APPROVE", "agreed")]
    assert len({r["by"] for r in received}) == 2 and all(r["at"] for r in received)
    assert await live(pool, first) == set()

    rejected = await delete(api, org, second, editor)
    assert (await decide(api, org, rejected["operationId"], alice)).status_code == 200
    no = await decide(api, org, rejected["operationId"], bob, "REJECT", comment="not this one")
    assert no.status_code == 200 and no.json()["data"]["status"] == "REJECTED", no.text
    record = await wait_for_operation(api, org.headers(), rejected["operationId"])
    assert record["status"] == "REJECTED" and record["approval"]["decision"] == "REJECT"
    assert [r["decision"] for r in record["approval"]["received"]] == ["APPROVE", "REJECT"]
    assert await live(pool, second)


async def test_changing_the_policy_never_changes_an_operation_already_waiting(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    cluster_id = await deployed(api, org, "fixed-rules")
    await put_policy(api, org, approvalsRequired=2, requireDifferentApprover=True)
    editor = await key(pool, org, "editor", "editor")
    accepted = await delete(api, org, cluster_id, editor)
    await put_policy(api, org, approvalsRequired=1, requireDifferentApprover=False, clusterDelete=False)

    first = await decide(api, org, accepted["operationId"], org.owner_key)
    assert first.status_code == 200 and first.json()["data"]["status"] == "AWAITING_APPROVAL", first.text
    record = (await api.get(f"/v1/operations/{accepted['operationId']}", headers=org.headers())).json()["data"]
    assert record["approval"]["required"] == 2 and record["approval"]["requireDifferentApprover"] is True
    assert await live(pool, cluster_id)
    # The new policy applies to the next operation: a delete no longer waits at all.
    other = await deployed(api, org, "new-rules")
    response = await api.delete(f"/v1/clusters/{other}", headers=org.headers(editor))
    assert response.json()["data"]["approvalRequired"] is False


async def test_the_policy_is_validated_naming_the_field_and_changed_by_admins_only(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    url = f"/v1/organizations/{org.id}/approval-policy"
    default = (await api.get(url, headers=org.headers())).json()["data"]
    assert default == {
        "clusterDeploy": False,
        "clusterUpdate": False,
        "minorVersionUpgrade": True,
        "clusterDelete": True,
        "approvalsRequired": 1,
        "requireDifferentApprover": False,
        "rules": [],
    }
    cases = [
        ({"approvalsRequired": 0}, "approvalsRequired"),
        ({"approvalsRequired": "2"}, "approvalsRequired"),
        ({"rules": [{"labelSelector": "env in (prod", "operations": ["clusterDelete"]}]}, "rules[0].labelSelector"),
        ({"rules": [{"labelSelector": "env=prod", "operations": ["reboot"]}]}, "rules[0].operations[0]"),
        ({"rules": [{"operations": ["clusterDelete"]}]}, "rules[0].labelSelector"),
        ({"requireDifferentApprover": "yes"}, "requireDifferentApprover"),
    ]
    for body, field in cases:
        response = await api.put(url, json=body, headers=org.headers())
        assert response.status_code == 422, (body, response.text)
        assert field in [d["field"] for d in response.json()["error"]["details"]], (body, response.text)
    assert (await api.get(url, headers=org.headers())).json()["data"] == default  # nothing stored
    editor = await key(pool, org, "editor", "editor")
    assert (await api.put(url, json={"approvalsRequired": 2}, headers=org.headers(editor))).status_code == 403
    admin = await key(pool, org, "admin", "admin")
    changed = await api.put(
        url,
        json={
            "rules": [{"name": "prod", "environment": "prod", "operations": ["clusterDelete"], "approvalsRequired": 2}]
        },
        headers=org.headers(admin),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["rules"] == [
        {
            "name": "prod",
            "labelSelector": "env=prod",
            "operations": ["clusterDelete"],
            "approvalsRequired": 2,
            "requireDifferentApprover": None,
        }
    ]


async def test_label_scoped_rules_make_prod_deletes_wait_and_dev_deletes_run(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    prod = await deployed(api, org, "payments-prod", {"env": "prod", "team": "payments"})
    dev = await deployed(api, org, "payments-dev", {"env": "dev", "team": "payments"})
    unlabelled = await deployed(api, org, "scratch")
    rules = [
        {
            "name": "prod",
            "labelSelector": "env=prod",
            "operations": ["clusterDelete", "minorVersionUpgrade"],
            "approvalsRequired": 2,
        },
        {"name": "dev", "environment": "dev", "operations": []},
    ]
    policy = await put_policy(api, org, rules=rules)
    assert [r["name"] for r in policy["rules"]] == ["prod", "dev"]
    editor = await key(pool, org, "editor", "editor")

    # env=dev: no approval at all; the delete runs at once.
    response = await api.delete(f"/v1/clusters/{dev}", headers=org.headers(editor))
    assert response.status_code == 202 and response.json()["data"]["approvalRequired"] is False, response.text
    record = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"])
    assert record["status"] == "SUCCEEDED" and record["approval"] is None
    assert await live(pool, dev) == set()

    # env=prod: waits under the prod rule, for two owners, and the rule is on the record.
    accepted = await delete(api, org, prod, editor)
    waiting = (await api.get(f"/v1/operations/{accepted['operationId']}", headers=org.headers())).json()["data"]
    assert waiting["approval"]["rule"] == {"name": "prod", "labelSelector": "env=prod"}
    assert waiting["approval"]["required"] == 2
    assert await live(pool, prod)
    second = await key(pool, org, "owner", "second owner")
    assert (await decide(api, org, accepted["operationId"], org.owner_key)).json()["data"]["remaining"] == 1
    assert (await decide(api, org, accepted["operationId"], second)).json()["data"]["status"] == "RUNNING"
    assert (await wait_for_operation(api, org.headers(), accepted["operationId"]))["status"] == "SUCCEEDED"
    assert await live(pool, prod) == set()

    # No rule matches: the organization's own flags decide (deletes wait for one owner).
    other = await delete(api, org, unlabelled, editor)
    record = (await api.get(f"/v1/operations/{other['operationId']}", headers=org.headers())).json()["data"]
    assert record["approval"]["rule"]["name"] == "default" and record["approval"]["required"] == 1


async def test_a_prod_minor_upgrade_waits_under_its_rule_and_a_dev_one_runs(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    prod = await deployed(api, org, "upgrade-prod", {"env": "prod"})
    dev = await deployed(api, org, "upgrade-dev", {"env": "dev"})
    await put_policy(
        api,
        org,
        minorVersionUpgrade=False,  # the organization's own flag says no; the prod rule says yes
        rules=[
            {"name": "prod", "environment": "prod", "operations": ["clusterDelete", "minorVersionUpgrade"]},
            {"name": "dev", "environment": "dev", "operations": []},
        ],
    )
    upgrade = {"apiVersion": "clusterflow.dev/v1", "kind": "K8sClusterUpdate", "spec": {"kubernetesVersion": "1.32"}}
    editor = await key(pool, org, "editor", "editor")

    ran = await api.patch(f"/v1/clusters/{dev}", json=upgrade, headers=org.headers(editor))
    assert ran.status_code == 202 and ran.json()["data"]["approvalRequired"] is False, ran.text
    assert (await wait_for_operation(api, org.headers(), ran.json()["data"]["operationId"]))["status"] == "SUCCEEDED"
    dev_view = (await api.get(f"/v1/clusters/{dev}", headers=org.headers())).json()["data"]
    assert dev_view["kubernetesVersion"] == "1.32"

    waits = await api.patch(f"/v1/clusters/{prod}", json=upgrade, headers=org.headers(editor))
    assert waits.status_code == 202 and waits.json()["data"]["approvalRequired"] is True, waits.text
    operation_id = waits.json()["data"]["operationId"]
    record = await wait_for_operation(api, org.headers(), operation_id, until={"AWAITING_APPROVAL"})
    assert record["approval"]["rule"] == {"name": "prod", "labelSelector": "env=prod"}
    prod_view = (await api.get(f"/v1/clusters/{prod}", headers=org.headers())).json()["data"]
    assert prod_view["kubernetesVersion"] == "1.31"  # nothing upgraded before the decision
    approved = await decide(api, org, operation_id, org.owner_key, planHash=record["approval"]["planHash"])
    assert approved.status_code == 200, approved.text
    assert (await wait_for_operation(api, org.headers(), operation_id))["status"] == "SUCCEEDED"
    prod_view = (await api.get(f"/v1/clusters/{prod}", headers=org.headers())).json()["data"]
    assert prod_view["kubernetesVersion"] == "1.32"


async def test_an_editor_cannot_relabel_a_cluster_out_of_its_approval_rule(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    prod = await deployed(api, org, "relabel-prod", {"env": "prod"})
    await put_policy(
        api,
        org,
        clusterDelete=False,
        rules=[{"name": "prod", "environment": "prod", "operations": ["clusterDelete"], "approvalsRequired": 2}],
    )
    editor = await key(pool, org, "editor", "editor")
    merge = {"Content-Type": "application/merge-patch+json"}

    async def relabel(labels: dict[str, str | None], api_key: str) -> httpx.Response:
        return await api.patch(
            f"/v1/clusters/{prod}", json={"metadata": {"labels": labels}}, headers=org.headers(api_key) | merge
        )

    async def stored_labels() -> dict[str, str]:
        return dict(await pool.fetchval("SELECT labels FROM clusters WHERE id = $1", prod))

    # Moving it to env=dev, or dropping env, would let the editor's delete skip both owners.
    for labels in ({"env": "dev"}, {"env": None}):
        refused = await relabel(labels, editor)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "LABEL_CHANGE_NEEDS_OWNER"
        assert refused.json()["error"]["details"] == {"field": "metadata.labels", "operations": ["clusterDelete"]}
        assert await stored_labels() == {"env": "prod"}

    # A label the policy does not look at is the editor's to set; an owner may move the cluster.
    assert (await relabel({"team": "payments"}, editor)).status_code == 200
    assert await stored_labels() == {"env": "prod", "team": "payments"}
    assert (await relabel({"env": "dev"}, org.owner_key)).status_code == 200
    assert await stored_labels() == {"env": "dev", "team": "payments"}


async def test_an_owner_who_approves_the_moment_a_delete_is_accepted_is_not_refused(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    """The decision races the workflow beginning its record (PENDING, then AWAITING_APPROVAL):
    it is taken either way, recorded once, and the delete runs."""
    await put_policy(api, org, clusterDelete=True)
    editor = await key(pool, org, "editor", "hasty editor")
    names = [f"hasty-{i}" for i in range(4)]
    for cluster_id in await asyncio.gather(*(deployed(api, org, name) for name in names)):
        response = await api.delete(f"/v1/clusters/{cluster_id}", headers=org.headers(editor))
        assert response.status_code == 202, response.text
        operation_id = response.json()["data"]["operationId"]
        approved = await decide(api, org, operation_id, org.owner_key)
        assert approved.status_code == 200, approved.text
        record = await wait_for_operation(api, org.headers(), operation_id)
        assert record["status"] == "SUCCEEDED", record
        assert [r["decision"] for r in record["approval"]["received"]] == ["APPROVE"]
        assert await live(pool, cluster_id) == set()
