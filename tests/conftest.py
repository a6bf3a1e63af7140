"""One real PostgreSQL and one real Temporal dev server per test session.

Both come from the same devstack code `make run` uses. Tests isolate themselves by
organization (a fresh one per test) and by Temporal task queue (a fresh one per test), the way
the Temporal samples' conftest does, instead of restarting services.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from clusterflow.api.app import create_app
from clusterflow.devstack.postgres import EmbeddedPostgres, free_port
from clusterflow.devstack.temporal import EmbeddedTemporal
from clusterflow.records.db import create_pool
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from clusterflow.worker.main import build_worker


@dataclass
class Services:
    database_url: str
    temporal_address: str
    state_dir: Path


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("services")
    postgres = EmbeddedPostgres(root / "pg" / "data", free_port())
    temporal = EmbeddedTemporal(None, free_port(), None, log_file=root / "temporal.log")
    postgres.start()
    temporal.start()
    try:
        asyncio.run(migrate(postgres.dsn))
        yield Services(postgres.dsn, temporal.address, root)
    finally:
        temporal.stop()
        postgres.stop()


def test_settings(services: Services, **overrides: Any) -> Settings:
    """Settings for one test: fast simulated phases and retries, a task queue of its own."""
    values: dict[str, Any] = {
        "database_url": services.database_url,
        "temporal_address": services.temporal_address,
        "task_queue": f"test-{uuid.uuid4().hex[:12]}",
        "local_phase_seconds": 0.05,
        "activity_retry_initial_seconds": 0.1,
        "activity_heartbeat_timeout_seconds": 3.0,
        # Generous limits: tests that are not about rate limiting must never meet them.
        "rate_limit_writes_per_second": 100_000.0,
        "rate_limit_deletes_per_second": 100_000.0,
        "rate_limit_reads_per_second": 100_000.0,
        "reconcile_interval_seconds": 0.2,
        "reconcile_grace_seconds": 0.5,
        "state_dir": services.state_dir,
        # One stored catalog serves every test in the session; only the refresh tests rewrite it.
        "catalog_refresh_when_created": False,
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def settings(services: Services, request: pytest.FixtureRequest) -> Settings:
    """Per-test settings; a test changes them with
    `@pytest.mark.parametrize("settings", [{...}], indirect=True)`."""
    return test_settings(services, **getattr(request, "param", {}))


@pytest.fixture(scope="session")
async def pool(services: Services) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(services.database_url, 2, 30)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def temporal_client(services: Services) -> Client:
    return await Client.connect(services.temporal_address)


@dataclass
class Org:
    id: str
    owner_key: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.owner_key}"}


@pytest.fixture
async def org(pool: asyncpg.Pool) -> Org:
    org_id = await create_organization(pool, f"test-{uuid.uuid4().hex[:8]}")
    _, key = await create_api_key(pool, org_id, "test owner", "owner")
    return Org(org_id, key)


@pytest.fixture
async def worker(temporal_client: Client, pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[None]:
    """A real worker (same registration as production) on the test's task queue."""
    async with build_worker(temporal_client, pool, settings):
        yield


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in-process, its lifespan run, reached through httpx."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterflow.test") as client:
            yield client


@pytest.fixture(scope="session")
def moto_aws() -> Iterator[Any]:
    """moto's server in this process (AWS for the `aws` provider's tests)."""
    from tests.fakes.aws import MotoAws

    server = MotoAws()
    yield server
    server.stop()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
