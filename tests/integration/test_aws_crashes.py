"""A worker killed while EKS creates the control plane: the retry finds it, none is created twice.

The worker is the real `clusterflow worker` process, pointed at moto through boto3's standard
`AWS_ENDPOINT_URL`; it is killed with SIGKILL while it waits for the cluster to become ACTIVE.
moto makes clusters ACTIVE at once, so the test holds the new cluster in CREATING through
moto's backend (and counts the creates there) until the replacement worker has taken over.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from moto.eks.models import EKSBackend

from clusterflow.api.app import create_app
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import cloud_accounts, operations
from clusterflow.settings import Settings
from tests.aws_support import REGION, aws_document, aws_settings
from tests.conftest import Org, Services
from tests.fakes.aws import MotoAws, find_cluster, new_account_id
from tests.helpers import all_events, wait_for_operation
from tests.processes import kill_hard, settings_env, spawn, stop


async def connected_account(pool: asyncpg.Pool, org_id: str, account_id: str) -> None:
    """An account whose connect already succeeded (the connect flow has its own tests)."""
    operation_id = new_operation_id()
    async with pool.acquire() as conn, conn.transaction():
        await operations.insert(
            conn,
            operation_id=operation_id,
            organization_id=org_id,
            cluster_id=None,
            cluster_name="prod",
            operation_type="CLOUD_CONNECT",
            requested_by=None,
            idempotency_key=None,
            workflow_type="CloudConnect",
            workflow_input={},
        )
        await cloud_accounts.external_id(conn, org_id, "aws")
        row_id = await cloud_accounts.upsert_for_connect(
            conn,
            organization_id=org_id,
            provider="aws",
            account_id=account_id,
            cluster_name="prod",
            level="manage",
            region=REGION,
            role_name=cloud_accounts.aws_role_name(org_id),
            role_arn=f"arn:aws:iam::{account_id}:role/{cloud_accounts.aws_role_name(org_id)}",
            session_seconds=3600,
            operation_id=operation_id,
        )
        await cloud_accounts.record_check(conn, row_id, status="CONNECTED", error=None, verified=True)
        await operations.finish(conn, operation_id, "SUCCEEDED", "connected")


@pytest.fixture
def held_creates(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count moto's EKS cluster creates and leave each new cluster CREATING."""
    creates: Counter[str] = Counter()
    original = EKSBackend.create_cluster

    def create_cluster(self: EKSBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        creates[name] += 1
        cluster = original(self, name, *args, **kwargs)
        cluster.status = "CREATING"
        return cluster

    monkeypatch.setattr(EKSBackend, "create_cluster", create_cluster)
    return creates


async def test_worker_killed_mid_deploy_creates_exactly_one_eks_cluster(
    services: Services,
    moto_aws: MotoAws,
    org: Org,
    pool: asyncpg.Pool,
    held_creates: Counter[str],
    tmp_path: Path,
) -> None:
    settings: Settings = aws_settings(services, moto_aws, activity_heartbeat_timeout_seconds=2.0, aws_poll_seconds=0.1)
    account_id = new_account_id()
    await connected_account(pool, org.id, account_id)
    env = settings_env(
        settings,
        AWS_ENDPOINT_URL=moto_aws.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        CLUSTERFLOW_AWS_REGION=REGION,
        CLUSTERFLOW_AWS_POLL_SECONDS="0.1",
        # moto has no EKS add-ons, and a worker process cannot take the test's hooks.
        CLUSTERFLOW_AWS_EKS_ADDONS=json.dumps([]),
    )
    env.pop("CLUSTERFLOW_AWS_ENDPOINT_URL", None)
    first = spawn("worker", env, tmp_path / "worker-1.log")
    second = None
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
                doc = aws_document("crashy-eks", account_id)
                accepted = (await api.post("/v1/clusters", json=doc, headers=org.headers())).json()["data"]
                for _ in range(600):
                    if find_cluster("crashy-eks") is not None:
                        break
                    await asyncio.sleep(0.05)
                assert find_cluster("crashy-eks") is not None, (tmp_path / "worker-1.log").read_text()[-3000:]
                await asyncio.sleep(0.3)  # the worker is polling the CREATING cluster
                kill_hard(first)

                second = spawn("worker", env, tmp_path / "worker-2.log")
                for _ in range(600):
                    events = await all_events(api, org.headers(), accepted["operationId"])
                    if any(e["message"] == "found existing EKS cluster crashy-eks" for e in events):
                        break
                    await asyncio.sleep(0.05)
                find_cluster("crashy-eks").status = "ACTIVE"  # EKS finishes creating it
                record = await wait_for_operation(api, org.headers(), accepted["operationId"], timeout=90)
                events = await all_events(api, org.headers(), accepted["operationId"])
    finally:
        stop(first)
        if second is not None:
            stop(second)

    assert record["status"] == "SUCCEEDED", record
    assert held_creates["crashy-eks"] == 1
    assert set(find_cluster("crashy-eks").nodegroups) == {"workers", "batch"}
    messages = [e["message"] for e in events]
    assert any(m.startswith("re-checking CONTROL_PLANE after a worker restart") for m in messages), messages
    assert "found existing EKS cluster crashy-eks" in messages
    assert messages.count("requested EKS cluster crashy-eks") == 1
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
