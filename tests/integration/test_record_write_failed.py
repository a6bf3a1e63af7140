"""A record the database refuses for good ends the operation FAILED, RECORD_WRITE_FAILED, instead
of leaving it RUNNING while the write retries forever (issue 20, item 7).

The fault is real: a trigger in the test's PostgreSQL refuses one write of one operation, the
way a constraint refuses a value, and the real worker meets it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx

from tests.conftest import Org
from tests.helpers import all_events, deploy_document, wait_for_operation


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
