"""`clusterflow dev`: the whole stack on one machine, for `make run`.

Starts what is not configured externally (PostgreSQL unless DATABASE_URL, Temporal unless
TEMPORAL_ADDRESS), migrates, ensures an owner key, then runs one worker and the API as child
processes with the resolved addresses in their environment. Ctrl-C stops them in reverse
order: API first (no new work), then the worker (lets activities finish), then the services.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

from clusterflow.devstack.bootstrap import ensure_owner_key, write_env_file
from clusterflow.devstack.postgres import EmbeddedPostgres
from clusterflow.devstack.temporal import EmbeddedTemporal
from clusterflow.records.migrate import migrate
from clusterflow.settings import Settings
from clusterflow.vault import dev_vault_keys


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own http:// URL
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def _stop(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_dev_stack(settings: Settings) -> int:
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    postgres: EmbeddedPostgres | None = None
    temporal: EmbeddedTemporal | None = None
    api: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if settings.database_url:
            dsn = settings.database_url
        else:
            postgres = EmbeddedPostgres(state / "postgres" / "data", settings.postgres_port)
            postgres.start()
            dsn = postgres.dsn
            env["DATABASE_URL"] = dsn
        if settings.temporal_address:
            temporal_address, ui_url = settings.temporal_address, None
        else:
            temporal = EmbeddedTemporal(
                state / "temporal" / "temporal.db",
                settings.temporal_port,
                settings.temporal_ui_port,
                namespace=settings.temporal_namespace,
                log_file=state / "temporal" / "server.log",
            )
            temporal.start()
            temporal_address, ui_url = temporal.address, temporal.ui_url
            env["TEMPORAL_ADDRESS"] = temporal_address

        if not settings.vault_keys:
            env["CLUSTERFLOW_VAULT_KEYS"] = dev_vault_keys(state)
        applied = asyncio.run(migrate(dsn))
        org_id, key, new_key = asyncio.run(ensure_owner_key(dsn, state / "dev.env"))
        write_env_file(state / "dev.env", settings.api_url, key)

        logs = state / "logs"
        logs.mkdir(exist_ok=True)
        worker = subprocess.Popen(
            [sys.executable, "-m", "clusterflow.cli.main", "worker"],
            env=env,
            start_new_session=True,
        )
        api = subprocess.Popen(
            [sys.executable, "-m", "clusterflow.cli.main", "api"],
            env=env,
            start_new_session=True,
        )
        _wait_http(f"http://{settings.api_host}:{settings.api_port}/healthz", api)
        print(
            "\nclusterflow is running\n"
            f"  API          {settings.api_url}   (OpenAPI: {settings.api_url}/docs)\n"
            f"  Console      {settings.api_url}/console   (sign in with the API key below)\n"
            f"  Temporal UI  {ui_url or '(external Temporal at ' + temporal_address + ')'}\n"
            f"  PostgreSQL   {dsn}\n"
            f"  organization {org_id}\n"
            f"  owner key    {key}{'  (new)' if new_key else ''}\n"
            f"  env file     {state / 'dev.env'}   (migrations applied now: {len(applied)})\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            for name, child in (("API", api), ("worker", worker)):
                if child.poll() is not None:
                    print(f"the {name} exited with {child.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.3)
        print("stopping clusterflow...", flush=True)
        return 0
    finally:
        _stop(api, 15)
        _stop(worker, 30)
        if temporal is not None:
            temporal.stop()
        if postgres is not None:
            postgres.stop()
