"""A private stack for one chaos scenario: its own PostgreSQL, Temporal dev server (SQLite file),
API and worker processes, each of which the scenario may kill and restart.

The session's shared services (tests/conftest.py) cannot be broken without breaking every other
test, so chaos brings its own. `CHAOS_FULL=1` (`make chaos`) runs the sizes the issue
names; without it (`make test`) each scenario runs a short version of the same script.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from clusterflow.devstack.postgres import EmbeddedPostgres, free_port
from clusterflow.devstack.temporal import EmbeddedTemporal
from clusterflow.records.db import create_pool
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import create_api_key, create_organization
from tests.processes import kill_hard, stop

FULL = os.environ.get("CHAOS_FULL") == "1"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "REJECTED")


def size(short: int, full: int) -> int:
    return full if FULL else short


def verdict(scenario: str, ok: bool, details: str) -> None:
    """Every scenario ends with one line a person (or `make chaos`) reads."""
    print(f"\nVERDICT {scenario}: {'PASS' if ok else 'FAIL'} - {details}", flush=True)


class ChaosStack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres = EmbeddedPostgres(root / "pg", free_port())
        self.temporal = EmbeddedTemporal(root / "temporal.db", free_port(), None, log_file=root / "temporal.log")
        self.api_port = free_port()
        self.key = ""
        self.org = ""
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pool: asyncpg.Pool[Any] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    async def new_key(self) -> tuple[str, str]:
        """An owner key of a fresh organization: a scenario's own view of a shared stack."""
        assert self.pool is not None
        org = await create_organization(self.pool, f"chaos-{uuid.uuid4().hex[:8]}")
        _, key = await create_api_key(self.pool, org, "chaos", "owner")
        return org, key

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.postgres.dsn,
            "TEMPORAL_ADDRESS": self.temporal.address,
            "CLUSTERFLOW_TASK_QUEUE": "chaos",
            "CLUSTERFLOW_API_PORT": str(self.api_port),
            "CLUSTERFLOW_STATE_DIR": str(self.root / "state"),
            "CLUSTERFLOW_LOCAL_PHASE_SECONDS": "0.2",
            "CLUSTERFLOW_ACTIVITY_RETRY_INITIAL_SECONDS": "0.2",
            "CLUSTERFLOW_ACTIVITY_HEARTBEAT_TIMEOUT_SECONDS": "2",
            "CLUSTERFLOW_RECONCILE_INTERVAL_SECONDS": "0.5",
            # Above the API's enqueue window (the 2 s Temporal bound + the 5 s acquire timeout):
            # a reconciler never takes a row whose enqueue the API is about to refuse.
            "CLUSTERFLOW_RECONCILE_GRACE_SECONDS": "8",
            "CLUSTERFLOW_RATE_LIMIT_WRITES_PER_SECOND": "100000",
            "CLUSTERFLOW_RATE_LIMIT_DELETES_PER_SECOND": "100000",
            "CLUSTERFLOW_RATE_LIMIT_READS_PER_SECOND": "100000",
            "CLUSTERFLOW_STREAM_RETRY_MS": "100",
            "CLUSTERFLOW_WORKFLOW_START_TIMEOUT_SECONDS": "2",
            **extra,
        }

    def spawn(self, command: str, name: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "clusterflow.cli.main", command],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    async def start_api(self, name: str = "api") -> subprocess.Popen[bytes]:
        process = self.spawn("api", name)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as probe:
            while time.monotonic() < deadline:
                assert process.poll() is None, f"the API exited; see {self.root / name}.log"
                try:
                    if (await probe.get(f"{self.base}/healthz", timeout=1)).status_code == 200:
                        return process
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("the API did not start")

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        return self.spawn("worker", name)

    @staticmethod
    def kill(process: subprocess.Popen[bytes] | None) -> None:
        assert process is not None
        kill_hard(process)

    def freeze_temporal(self) -> None:
        """SIGSTOP: Temporal keeps its connections open and answers nothing, as a hung server."""
        assert self.temporal.process is not None
        os.kill(self.temporal.process.pid, signal.SIGSTOP)

    def thaw_temporal(self) -> None:
        if self.temporal.process is not None and self.temporal.process.poll() is None:
            os.kill(self.temporal.process.pid, signal.SIGCONT)

    async def wait_terminal(self, operation_ids: list[str], timeout: float) -> dict[str, str]:
        assert self.pool is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                rows = await self.pool.fetch(
                    "SELECT id, status FROM operations WHERE id = ANY($1::text[])", operation_ids
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                rows = []
            statuses = {r["id"]: r["status"] for r in rows}
            if len(statuses) == len(operation_ids) and all(s in TERMINAL for s in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                return statuses
            await asyncio.sleep(0.2)


@asynccontextmanager
async def chaos_stack(root: Path) -> AsyncIterator[ChaosStack]:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    stack = ChaosStack(root)
    stack.postgres.start()
    stack.temporal.start()
    try:
        await migrate(stack.postgres.dsn)
        stack.pool = await create_pool(stack.postgres.dsn, 1, 10)
        stack.org = await create_organization(stack.pool, f"chaos-{uuid.uuid4().hex[:8]}")
        _, stack.key = await create_api_key(stack.pool, stack.org, "chaos", "owner")
        yield stack
    finally:
        stack.thaw_temporal()
        for process in stack.processes:
            stop(process, timeout=10)
        if stack.pool is not None:
            await stack.pool.close()
        stack.temporal.stop()
        stack.postgres.stop()
