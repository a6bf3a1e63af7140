"""History retention through the real worker: the HistoryRetention workflow, started as its
schedule starts it, retires old event logs, audit rows, delivery logs and operations in batches,
per organization; operations keep their summary, the API says their events were retired, and
page tokens taken before retention still work. Every claim is checked in the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from clusterflow.contracts.retention import HistoryKind, RetentionDays, RetentionInput, RetentionResult
from clusterflow.records import audit, notifications, retention
from clusterflow.records.audit import AuditEvent
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from clusterflow.worker.schedules import retention_schedule_id
from clusterflow.workflows.retention import HistoryRetentionWorkflow
from tests.conftest import Org
from tests.helpers import all_events, deploy_document, wait_for_operation

pytestmark = pytest.mark.usefixtures("worker")

# Small batches, so every kind takes several short transactions.
SMALL_BATCHES = [{"retention_batch_size": 5}]


async def deploy(api: httpx.AsyncClient, org: Org, name: str) -> str:
    response = await api.post("/v1/clusters", json=deploy_document(name, phaseSeconds=0), headers=org.headers())
    assert response.status_code == 202, response.text
    operation_id = str(response.json()["data"]["operationId"])
    assert (await wait_for_operation(api, org.headers(), operation_id))["status"] == "SUCCEEDED"
    return operation_id


async def finished_days_ago(pool: asyncpg.Pool, operation_id: str, days: int) -> None:
    """Backdate a finished operation and its events as if it had run `days` ago."""
    shift = timedelta(days=days)
    await pool.execute(
        """UPDATE operations SET created_at = created_at - $2::interval, started_at = started_at - $2::interval,
                  last_update = last_update - $2::interval, completed_at = completed_at - $2::interval WHERE id = $1""",
        operation_id,
        shift,
    )
    await pool.execute(
        "UPDATE operation_events SET timestamp = timestamp - $2::interval WHERE operation_id = $1", operation_id, shift
    )


def audit_event(org_id: str | None, days_ago: int) -> AuditEvent:
    return AuditEvent(
        organization_id=org_id,
        event_type="CLUSTER",
        action="UPDATE",
        resource="cluster",
        resource_id="cl_old",
        actor="key_old",
        actor_role="editor",
        request_id=f"req_{uuid.uuid4().hex}",
        ip_address="203.0.113.9",
        user_agent="test",
        success=True,
        status_code=200,
        occurred_at=datetime.now(UTC) - timedelta(days=days_ago),
    )


async def delivered(pool: asyncpg.Pool, org_id: str, days_ago: int, attempts: int) -> str:
    """A dispatched notification event and its delivery attempts, `days_ago` old."""
    subscription = await notifications.save_subscription(pool, org_id, "operation.failed", ["webhook"], True)
    event_id = await notifications.enqueue(pool, org_id, "operation.failed", "op_x", {"operationId": "op_x"})
    assert event_id is not None
    await notifications.mark_dispatched(pool, [event_id])
    for attempt in range(1, attempts + 1):
        await notifications.log_attempt(
            pool,
            event_id=event_id,
            subscription_id=subscription.id,
            organization_id=org_id,
            topic="operation.failed",
            channel="webhook",
            attempt=attempt,
            outcome="RETRYING" if attempt < attempts else "DELIVERED",
            response_status=503 if attempt < attempts else 200,
            error=None,
            duration_ms=12,
        )
    age = timedelta(days=days_ago)
    await pool.execute(
        """UPDATE notification_outbox SET created_at = created_at - $2::interval,
                  dispatched_at = dispatched_at - $2::interval WHERE id = $1""",
        event_id,
        age,
    )
    await pool.execute(
        "UPDATE notification_deliveries SET attempted_at = attempted_at - $2::interval WHERE event_id = $1",
        event_id,
        age,
    )
    return event_id


async def run_retention(temporal_client: Client, settings: Settings) -> RetentionResult:
    return await temporal_client.execute_workflow(
        HistoryRetentionWorkflow.run,
        RetentionInput(),
        id=f"retention-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        result_type=RetentionResult,
    )


async def count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


async def audit_rows(pool: asyncpg.Pool, org_id: str | None, *, older_than_days: int) -> int:
    return await count(
        pool,
        """SELECT count(*) FROM audit_events WHERE organization_id IS NOT DISTINCT FROM $1
              AND occurred_at < now() - make_interval(days => $2)""",
        org_id,
        older_than_days,
    )


@pytest.mark.parametrize("settings", SMALL_BATCHES, indirect=True)
async def test_retention_retires_old_history_keeps_summaries_and_page_tokens(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client, settings: Settings
) -> None:
    # Four deploys, oldest ID first: op1 and op4 recent, op2 finished 100 days ago (its log goes,
    # the record stays), op3 finished 500 days ago (the record goes too).
    op1 = await deploy(api, org, "ret-1")
    op2 = await deploy(api, org, "ret-2")
    op3 = await deploy(api, org, "ret-3")
    op4 = await deploy(api, org, "ret-4")
    await finished_days_ago(pool, op2, 100)
    await finished_days_ago(pool, op3, 500)
    before = (await api.get(f"/v1/operations/{op2}", headers=org.headers())).json()["data"]
    events_before = await all_events(api, org.headers(), op2)
    assert len(events_before) > 5  # more than one batch

    # Page tokens and cursors a client holds before retention runs.
    first_page = (await api.get("/v1/operations", params={"limit": 2}, headers=org.headers())).json()["data"]
    assert [o["operationId"] for o in first_page["operations"]] == [op4, op3]
    token = first_page["nextPageToken"]
    cursor = events_before[2]["sequence"]

    # Another organization keeps event logs longer and audit rows shorter than the defaults.
    other_id = await create_organization(pool, "retention-other")
    _, other_key = await create_api_key(pool, other_id, "owner", "owner")
    other = Org(other_id, other_key)
    await retention.set_organization_retention(pool, other_id, events=200, audit=10)
    other_op = await deploy(api, other, "ret-x")
    await finished_days_ago(pool, other_op, 100)

    for _ in range(12):
        await audit.record(pool, audit_event(org.id, 450))
        await audit.record(pool, audit_event(other_id, 20))
    await audit.record(pool, audit_event(org.id, 300))
    await audit.record(pool, audit_event(None, 450))
    old_event = await delivered(pool, org.id, 40, attempts=3)
    recent_event = await delivered(pool, org.id, 5, attempts=2)
    audit_total = await count(pool, "SELECT count(*) FROM audit_events")

    result = await run_retention(temporal_client, settings)
    by_kind = {r.kind: r for r in result.results}
    assert all(r.complete for r in result.results)
    assert by_kind[HistoryKind.OPERATIONS].operations == 1
    assert by_kind[HistoryKind.AUDIT].rows == 12 + 12 + 1
    assert by_kind[HistoryKind.AUDIT].batches >= 3
    assert by_kind[HistoryKind.DELIVERIES].rows == 3 + 1

    # op2: no events left in the database, the record and its summary kept, and the API says so.
    assert await count(pool, "SELECT count(*) FROM operation_events WHERE operation_id = $1", op2) == 0
    row = await pool.fetchrow("SELECT status, event_count, events_retired_at FROM operations WHERE id = $1", op2)
    assert row["status"] == "SUCCEEDED"
    assert row["event_count"] == len(events_before)
    assert row["events_retired_at"] is not None
    after = (await api.get(f"/v1/operations/{op2}", headers=org.headers())).json()["data"]
    kept = ("status", "operationType", "progressPercentage", "currentPhase", "message", "error", "completedAt")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert after["recentEvents"] == []
    assert after["eventsRetiredAt"] is not None
    page = await api.get(f"/v1/operations/{op2}/events", params={"cursor": cursor}, headers=org.headers())
    assert page.status_code == 200
    assert page.json()["data"]["events"] == []
    assert page.json()["data"]["eventsRetiredAt"] == after["eventsRetiredAt"]
    assert page.json()["data"]["terminal"] is True
    assert "retired by retention" in page.json()["message"]

    # op3 is gone (events and all); recent operations and their events are untouched.
    assert await count(pool, "SELECT count(*) FROM operations WHERE id = $1", op3) == 0
    assert await count(pool, "SELECT count(*) FROM operation_events WHERE operation_id = $1", op3) == 0
    assert (await api.get(f"/v1/operations/{op3}", headers=org.headers())).status_code == 404
    for recent in (op1, op4):
        assert (await api.get(f"/v1/operations/{recent}", headers=org.headers())).json()["data"][
            "eventsRetiredAt"
        ] is None
        assert len(await all_events(api, org.headers(), recent)) > 5
    # The other organization keeps its 100-day-old log (200 days there).
    assert len(await all_events(api, other.headers(), other_op)) > 5

    # The page token taken before retention points at a deleted operation and still works.
    second = await api.get("/v1/operations", params={"limit": 2, "pageToken": token}, headers=org.headers())
    assert second.status_code == 200
    assert [o["operationId"] for o in second.json()["data"]["operations"]] == [op2, op1]

    # Audit: each organization's own retention; rows without one by the default.
    assert await audit_rows(pool, org.id, older_than_days=400) == 0
    assert await audit_rows(pool, org.id, older_than_days=250) == 1
    assert await audit_rows(pool, other_id, older_than_days=10) == 0
    assert await audit_rows(pool, other_id, older_than_days=0) >= 1  # its deploy
    assert await audit_rows(pool, None, older_than_days=400) == 0
    assert await count(pool, "SELECT count(*) FROM audit_events") == audit_total - 25

    # Deliveries: the old event and its log gone, the recent ones kept.
    assert await notifications.event(pool, old_event) is None
    assert await count(pool, "SELECT count(*) FROM notification_deliveries WHERE event_id = $1", old_event) == 0
    assert await notifications.event(pool, recent_event) is not None
    assert await count(pool, "SELECT count(*) FROM notification_deliveries WHERE event_id = $1", recent_event) == 2

    # A second run finds nothing left to do.
    again = await run_retention(temporal_client, settings)
    assert sum(r.rows + r.operations for r in again.results) == 0


async def test_operations_other_records_refer_to_are_kept(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, temporal_client: Client, settings: Settings
) -> None:
    operation_id = await deploy(api, org, "ret-ref")
    await finished_days_ago(pool, operation_id, 500)
    # A kubeconfig row is keyed by the operation that issued it (a foreign key to operations).
    cluster_id = await pool.fetchval("SELECT cluster_id FROM operations WHERE id = $1", operation_id)
    await pool.execute(
        """INSERT INTO kubeconfigs (operation_id, cluster_id, organization_id, status, duration_seconds)
           VALUES ($1, $2, $3, 'FAILED', 3600)""",
        operation_id,
        cluster_id,
        org.id,
    )
    result = await run_retention(temporal_client, settings)
    assert {r.kind: r for r in result.results}[HistoryKind.OPERATIONS].operations == 0
    row = await pool.fetchrow("SELECT status, events_retired_at FROM operations WHERE id = $1", operation_id)
    assert row["status"] == "SUCCEEDED"
    assert row["events_retired_at"] is not None  # its log is past the 90 days all the same


async def test_the_workers_keep_a_retention_schedule(temporal_client: Client, settings: Settings) -> None:
    from clusterflow.worker.schedules import ensure_schedules

    await ensure_schedules(temporal_client, settings)
    described = await temporal_client.get_schedule_handle(retention_schedule_id(settings)).describe()
    action = described.schedule.action
    assert getattr(action, "workflow", None) == "HistoryRetention"
    assert described.schedule.spec.intervals[0].every == timedelta(seconds=settings.retention_interval_seconds)
    await temporal_client.get_schedule_handle(retention_schedule_id(settings)).delete()


async def test_an_owner_sets_the_organization_retention_through_the_api(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, settings: Settings
) -> None:
    url = f"/v1/organizations/{org.id}/retention"
    initial = (await api.get(url, headers=org.headers())).json()["data"]
    assert initial["overrides"] == {
        "eventsDays": None,
        "auditDays": None,
        "deliveriesDays": None,
        "operationsDays": None,
    }
    assert (
        initial["effective"]
        == initial["defaults"]
        == {
            "eventsDays": settings.retention_events_days,
            "auditDays": settings.retention_audit_days,
            "deliveriesDays": settings.notification_retention_days,
            "operationsDays": settings.retention_operations_days,
        }
    )

    changed = await api.put(url, json={"eventsDays": 30, "auditDays": 2000}, headers=org.headers())
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["effective"]["eventsDays"] == 30
    assert changed.json()["data"]["effective"]["operationsDays"] == settings.retention_operations_days
    row = await pool.fetchrow(
        """SELECT retention_events_days, retention_audit_days, retention_deliveries_days, retention_operations_days
             FROM organizations WHERE id = $1""",
        org.id,
    )
    assert tuple(row) == (30, 2000, None, None)
    # What the schedule will apply: the organization's days, defaults elsewhere.
    [mine] = [
        o
        for o in await retention.organizations(pool, defaults_of(settings), limit=100_000)
        if o.organization_id == org.id
    ]
    assert (mine.days.events, mine.days.audit, mine.days.operations) == (30, 2000, settings.retention_operations_days)

    for body, field in (({"eventsDays": 0}, "eventsDays"), ({"auditDays": "30"}, "auditDays"), ({"days": 3}, "days")):
        bad = await api.put(url, json=body, headers=org.headers())
        assert bad.status_code == 422, bad.text
        assert field in [d["field"] for d in bad.json()["error"]["details"]]
    _, editor_key = await create_api_key(pool, org.id, "editor", "editor")
    assert (await api.put(url, json={"eventsDays": 1}, headers=org.headers(editor_key))).status_code == 403
    other_id = await create_organization(pool, "retention-foreign")
    assert (await api.get(f"/v1/organizations/{other_id}/retention", headers=org.headers())).status_code == 404
    assert (await api.put(f"/v1/organizations/{other_id}/retention", json={}, headers=org.headers())).status_code == 404
    assert tuple(
        await pool.fetchrow(
            "SELECT retention_events_days, retention_audit_days FROM organizations WHERE id = $1", org.id
        )
    ) == (30, 2000)

    reset = await api.put(url, json={}, headers=org.headers())
    assert reset.json()["data"]["overrides"]["eventsDays"] is None
    assert await pool.fetchval("SELECT retention_events_days FROM organizations WHERE id = $1", org.id) is None


def defaults_of(settings: Settings) -> RetentionDays:
    return RetentionDays(
        events=settings.retention_events_days,
        audit=settings.retention_audit_days,
        deliveries=settings.notification_retention_days,
        operations=settings.retention_operations_days,
    )
