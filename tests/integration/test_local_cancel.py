"""A cancel reaches a running `local` phase at once, not when the phase would have ended.

Temporal tells an activity it was cancelled only in the answer to a heartbeat, and the SDK
sends heartbeats at most every 80% of the heartbeat timeout (24 s at the default 30 s). The
simulator waits in half-second slices and heartbeats each one through a throttle of its own
(`activities/providers/local/waits.py`), so the cancel lands within about a second.

Through the API on the real worker with the production heartbeat timeout: a deploy whose
phases take 40 s each is cancelled in its VALIDATE phase; the operation must be CANCELLED long
before the phase could have ended, VALIDATE must never have completed, and NETWORK must never
have started. The timeout is generous (a loaded machine); the phase is far longer.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from clusterflow.records import local_cloud
from tests.conftest import Org
from tests.helpers import all_events, deploy_document, wait_for_operation

pytestmark = pytest.mark.usefixtures("worker")

PHASE_SECONDS = 40.0


@pytest.mark.parametrize("settings", [{"activity_heartbeat_timeout_seconds": 30.0}], indirect=True)
async def test_a_cancel_lands_in_a_long_local_phase_long_before_it_would_end(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool
) -> None:
    response = await api.post(
        "/v1/clusters", json=deploy_document("long-phase", phaseSeconds=PHASE_SECONDS), headers=org.headers()
    )
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    operation_id = accepted["operationId"]
    record = await wait_for_operation(api, org.headers(), operation_id, until={"RUNNING"})
    for _ in range(400):  # until the phase activity runs (its "started" event is written)
        events = await all_events(api, org.headers(), operation_id)
        if any(e["phase"] == "VALIDATE" for e in events):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # well inside the phase: the SDK has sent its first heartbeat

    cancelled_at = time.monotonic()
    response = await api.post(f"/v1/operations/{operation_id}/cancel", headers=org.headers())
    assert response.status_code == 200, response.text
    record = await wait_for_operation(api, org.headers(), operation_id, timeout=PHASE_SECONDS / 2)
    took = time.monotonic() - cancelled_at
    assert record["status"] == "CANCELLED", record
    assert took < PHASE_SECONDS / 4, f"the cancel took {took:.1f} s in a {PHASE_SECONDS} s phase"

    events = await all_events(api, org.headers(), operation_id)
    messages = [e["message"] for e in events]
    cancel = next(i for i, m in enumerate(messages) if m.startswith("cancel requested"))
    assert messages[:cancel] == ["operation started", "VALIDATE started"], messages
    # The phase was stopped, not finished: it never completed, no later phase of the deploy
    # started, and what follows the cancel is the cleanup, in reverse, then the end.
    assert "VALIDATE completed" not in messages and "NETWORK started" not in messages, messages
    after = messages[cancel + 1 :]
    assert after and all("cleanup" in m or "cancel" in m.lower() for m in after), after
    assert [m for m in after if m.endswith("cleanup started")] == [
        f"{phase} cleanup started" for phase in ("ADDONS", "NODE_GROUPS", "CONTROL_PLANE", "NETWORK")
    ], after
    assert record["metadata"]["leftBehind"] == [] and await live_resources(pool, accepted["clusterId"]) == set()


async def live_resources(pool: asyncpg.Pool, cluster_id: str) -> set[tuple[str, str]]:
    return {(r.kind, r.name) for r in await local_cloud.list_resources(pool, cluster_id, live_only=True)}
