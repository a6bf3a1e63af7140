"""A record the database refuses for good ends the operation FAILED, RECORD_WRITE_FAILED, instead
of leaving it RUNNING while the write retries forever (issue 20, item 7).

The fault is real: a trigger in the test's PostgreSQL refuses one write of one operation, the
way a constraint refuses a value, and the real worker meets it. A record that refuses even the
failure is ended by the worker's reconciler once the database takes writes again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import operations
from tests.conftest import Org, Services, test_settings
from tests.helpers import all_events, deploy_document, wait_for_operation
from tests.processes import settings_env, spawn, stop


@asynccontextmanager
async def refused(pool: asyncpg.Pool, table: str, condition: str) -> AsyncIterator[None]:
    """While inside, PostgreSQL refuses every UPDATE of `table` whose new row meets
    `condition` with a check violation, as a constraint would."""
    name = f"refuse_{uuid.uuid4().hex[:12]}"
    await pool.execute(
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF {condition} THEN
                    RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();"""
    )
    try:
        yield
    finally:
        await pool.execute(f"DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}();")


def quoted(value: str) -> str:
    assert value.replace("_", "").replace("-", "").isalnum()
    return f"'{value}'"


async def test_a_finish_the_database_refuses_ends_the_operation_failed_record_write_failed(
    worker: None, api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    response = await api.post("/v1/clusters", json=deploy_document("refused", phaseSeconds=0.3), headers=org.headers())
    accepted = response.json()["data"]
    operation_id = accepted["operationId"]
    condition = f"NEW.id = {quoted(operation_id)} AND NEW.status = 'SUCCEEDED'"
    async with refused(pool, "operations", condition):
        record = await wait_for_operation(api, org.headers(), operation_id, timeout=60)
        events = await all_events(api, org.headers(), operation_id)
    assert record["status"] == "FAILED", record
    assert record["error"]["code"] == "RECORD_WRITE_FAILED"
    assert record["error"]["retryable"] is False
    assert "records.finish_operation" in record["error"]["message"]
    assert events[-1]["labels"].get("errorCode") == "RECORD_WRITE_FAILED"
    # The cloud work happened; the cluster's record says it needs a look rather than CREATING.
    row = await pool.fetchrow("SELECT state FROM clusters WHERE id = $1", accepted["clusterId"])
    assert row["state"] == "FAILED"


async def test_a_cluster_row_the_database_refuses_still_ends_the_operation(
    worker: None, api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    doc = deploy_document("refused-2", phaseSeconds=0.3)
    response = await api.post("/v1/clusters", json=doc, headers=org.headers())
    accepted = response.json()["data"]
    cluster_id = accepted["clusterId"]
    # Every change of the cluster's state is refused: the deploy's finish, then the FAILED mark.
    condition = f"NEW.id = {quoted(cluster_id)} AND NEW.state IS DISTINCT FROM OLD.state"
    async with refused(pool, "clusters", condition):
        record = await wait_for_operation(api, org.headers(), accepted["operationId"], timeout=60)
        state = await pool.fetchval("SELECT state FROM clusters WHERE id = $1", cluster_id)
    assert record["status"] == "FAILED", record
    assert record["error"]["code"] == "RECORD_WRITE_FAILED"
    assert state not in ("ACTIVE", "FAILED")  # the refused row kept what it had


async def test_a_record_that_refuses_even_the_failure_is_ended_by_the_reconciler_once_it_takes_writes(
    services: Services, org: Org, pool: asyncpg.Pool, temporal_client: Client, tmp_path: Path
) -> None:
    """Every status change of the operation is refused: its workflow cannot record its end at
    all and fails saying so. Once the database takes writes again, the real worker's
    reconciler ends the record FAILED with the workflow's code."""
    from clusterflow.api.app import create_app

    # Ahead of it in the reconciler's walk: more operations idle for an hour than one page holds,
    # whose workflows still run (here: are unknown to Temporal), as a day of waiting approvals is.
    async with pool.acquire() as conn:
        for _ in range(45):
            await operations.insert(
                conn,
                operation_id=new_operation_id(),
                organization_id=org.id,
                cluster_id=None,
                cluster_name=None,
                operation_type="CLUSTER_DEPLOY",
                requested_by=None,
                idempotency_key=None,
                workflow_type="ClusterDeploy",
                workflow_input={},
            )
        await conn.execute(
            """UPDATE operations SET status = 'RUNNING', workflow_started_at = now() - interval '1 hour',
                      last_update = now() - interval '1 hour'
                WHERE organization_id = $1 AND status = 'PENDING' AND cluster_id IS NULL""",
            org.id,
        )
    settings = test_settings(services)
    env = settings_env(settings, CLUSTERFLOW_RECONCILE_ABANDONED_AFTER_SECONDS="1")
    worker = spawn("worker", env, tmp_path / "worker.log")
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                doc = deploy_document("refused-3", phaseSeconds=0.3)
                accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
                operation_id = accepted["operationId"]
                condition = f"NEW.id = {quoted(operation_id)} AND OLD.status = 'RUNNING' AND NEW.status <> 'RUNNING'"
                async with refused(pool, "operations", condition):
                    handle = temporal_client.get_workflow_handle(operation_id)
                    with pytest.raises(WorkflowFailureError) as failure:
                        await asyncio.wait_for(handle.result(), 60)
                    assert isinstance(failure.value.cause, ApplicationError)
                    assert failure.value.cause.type == "RECORD_WRITE_FAILED"
                    await asyncio.sleep(2)  # past the idle time: the reconciler finds it refused too
                    assert await pool.fetchval("SELECT status FROM operations WHERE id = $1", operation_id) == "RUNNING"
                record = await wait_for_operation(api, org.headers(), operation_id, timeout=30)
    finally:
        stop(worker)
    assert record["status"] == "FAILED", record
    assert record["error"]["code"] == "RECORD_WRITE_FAILED"
    assert "reconciler" in record["error"]["message"]
    assert await pool.fetchval("SELECT state FROM clusters WHERE id = $1", accepted["clusterId"]) == "FAILED"
