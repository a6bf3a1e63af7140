"""Running the real `clusterflow` processes from tests, configured through the environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from clusterflow.settings import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": settings.database_url or "",
            "TEMPORAL_ADDRESS": settings.temporal_address or "",
            "CLUSTERFLOW_TASK_QUEUE": settings.task_queue,
            "CLUSTERFLOW_LOCAL_PHASE_SECONDS": str(settings.local_phase_seconds),
            "CLUSTERFLOW_ACTIVITY_RETRY_INITIAL_SECONDS": str(settings.activity_retry_initial_seconds),
            "CLUSTERFLOW_ACTIVITY_HEARTBEAT_TIMEOUT_SECONDS": str(settings.activity_heartbeat_timeout_seconds),
            "CLUSTERFLOW_RECONCILE_INTERVAL_SECONDS": str(settings.reconcile_interval_seconds),
            "CLUSTERFLOW_RECONCILE_GRACE_SECONDS": str(settings.reconcile_grace_seconds),
            "CLUSTERFLOW_API_HOST": settings.api_host,
            "CLUSTERFLOW_API_PORT": str(settings.api_port),
            "CLUSTERFLOW_RATE_LIMIT_WRITES_PER_SECOND": str(settings.rate_limit_writes_per_second),
            "CLUSTERFLOW_RATE_LIMIT_DELETES_PER_SECOND": str(settings.rate_limit_deletes_per_second),
            "CLUSTERFLOW_RATE_LIMIT_READS_PER_SECOND": str(settings.rate_limit_reads_per_second),
            # Several workers share this machine: no fixed metrics port unless a test asks for one.
            "CLUSTERFLOW_METRICS_PORT": "0",
        }
    )
    env.update(extra)
    return env


def spawn(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clusterflow.cli.main", command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"process exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no shutdown hook runs, as when a machine dies."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_hard(process)
    return process.returncode
