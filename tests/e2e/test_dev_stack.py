"""`make run` as a user runs it: `clusterflow dev` on a fresh state directory, then again.

The stack runs as real processes (embedded PostgreSQL and Temporal, a worker, the API); the
test talks to it only over HTTP, with the key the stack wrote to `dev.env`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from clusterflow.devstack.bootstrap import read_env_file
from clusterflow.devstack.postgres import free_port
from tests.helpers import deploy_document


def _start_stack(state: Path, ports: dict[str, int], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
    env.update(
        CLUSTERFLOW_STATE_DIR=str(state),
        CLUSTERFLOW_API_PORT=str(ports["api"]),
        CLUSTERFLOW_TEMPORAL_PORT=str(ports["temporal"]),
        CLUSTERFLOW_TEMPORAL_UI_PORT=str(ports["ui"]),
        CLUSTERFLOW_POSTGRES_PORT=str(ports["postgres"]),
        CLUSTERFLOW_LOCAL_PHASE_SECONDS="0.05",
    )
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clusterflow.cli.main", "dev"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_ready(stack: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert stack.poll() is None, log.read_text()
        if "clusterflow is running" in log.read_text():
            return
        time.sleep(0.2)
    raise TimeoutError(log.read_text())


def _stop(stack: subprocess.Popen[bytes]) -> int:
    stack.send_signal(signal.SIGINT)
    return stack.wait(60)


def test_dev_stack_deploys_a_cluster_and_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port(), "postgres": free_port()}
    log = tmp_path / "stack.log"
    stack = _start_stack(state, ports, log)
    try:
        _wait_ready(stack, log)
        env = read_env_file(state / "dev.env")
        url, key = env["CLUSTERFLOW_URL"], env["CLUSTERFLOW_API_KEY"]
        assert url == f"http://127.0.0.1:{ports['api']}"
        assert key in log.read_text()  # printed for the user
        assert f"http://127.0.0.1:{ports['ui']}" in log.read_text()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            accepted = client.post("/v1/clusters", json=deploy_document("e2e-1"))
            assert accepted.status_code == 202, accepted.text
            operation_id = accepted.json()["data"]["operationId"]
            deadline = time.monotonic() + 60
            while True:
                record = client.get(f"/v1/operations/{operation_id}").json()["data"]
                if record["status"] in {"SUCCEEDED", "FAILED"} or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert record["status"] == "SUCCEEDED", record
            assert client.get("/readyz").json()["status"] == "ready"
    finally:
        assert _stop(stack) == 0, log.read_text()

    # Ctrl-C stopped every child: the ports are free again.
    for port in ports.values():
        with httpx.Client() as probe:
            try:
                probe.get(f"http://127.0.0.1:{port}/", timeout=0.5)
                raise AssertionError(f"port {port} still answers after the stack stopped")
            except httpx.ConnectError:
                pass

    log = tmp_path / "stack-2.log"
    stack = _start_stack(state, ports, log)
    try:
        _wait_ready(stack, log)
        assert read_env_file(state / "dev.env")["CLUSTERFLOW_API_KEY"] == key  # the same key still works
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            clusters = client.get("/v1/clusters").json()["data"]
            assert [c["clusterName"] for c in clusters] == ["e2e-1"]
            assert clusters[0]["state"] == "ACTIVE"
            assert client.get(f"/v1/operations/{operation_id}").json()["data"]["status"] == "SUCCEEDED"
    finally:
        assert _stop(stack) == 0, log.read_text()
