"""The `clusterflow` CLI as a user runs it: a subprocess against real API and worker processes.

It follows deploys to the end over SSE, exits with the operation's outcome, and survives the
API being killed mid-deploy by resuming with Last-Event-ID (every event printed exactly once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from clusterflow.devstack.postgres import free_port
from clusterflow.settings import Settings
from tests.conftest import Org, Services, test_settings
from tests.helpers import deploy_document
from tests.processes import kill_hard, settings_env, spawn, stop, wait_http

PHASES = ["VALIDATE", "NETWORK", "CONTROL_PLANE", "NODE_GROUPS", "ADDONS", "VERIFY"]


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    logs: Path
    api: subprocess.Popen[bytes]


@pytest.fixture
def stack(services: Services, tmp_path: Path) -> Iterator[Stack]:
    settings: Settings = test_settings(services, api_port=free_port())
    env = settings_env(settings, CLUSTERFLOW_STREAM_RETRY_MS="200")
    worker = spawn("worker", env, tmp_path / "worker.log")
    api = spawn("api", env, tmp_path / "api.log")
    stack = Stack(f"http://127.0.0.1:{settings.api_port}", env, tmp_path, api)
    try:
        wait_http(f"{stack.url}/healthz", api)
        yield stack
    finally:
        stop(stack.api)  # the test may have replaced it
        stop(worker)


def _cli_env(stack: Stack, org: Org) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERFLOW_", "DATABASE_URL", "TEMPORAL_"))}
    env.update(CLUSTERFLOW_URL=stack.url, CLUSTERFLOW_API_KEY=org.owner_key, COLUMNS="200")
    return env


def _cli(stack: Stack, org: Org, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clusterflow.cli.main", *args],
        env=_cli_env(stack, org),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _spec(tmp_path: Path, name: str, **local: Any) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(deploy_document(name, **local)))
    return str(path)


def _events(stack: Stack, org: Org, operation_id: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=stack.url, headers=org.headers(), timeout=10) as client:
        page = client.get(f"/v1/operations/{operation_id}/events", params={"limit": 1000}).json()["data"]
    events: list[dict[str, Any]] = page["events"]
    return events


def test_cli_follows_deploys_to_the_end_and_exits_with_the_outcome(stack: Stack, org: Org, tmp_path: Path) -> None:
    done = _cli(stack, org, "clusters", "deploy", "-f", _spec(tmp_path, "cli-1", phaseSeconds=0.1), "--follow")
    assert done.returncode == 0, done.stdout + done.stderr
    for phase in PHASES:
        assert f"{phase} completed" in done.stdout
    assert "SUCCEEDED" in done.stdout

    listed = _cli(stack, org, "clusters", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (cluster,) = json.loads(listed.stdout)
    assert cluster["clusterName"] == "cli-1"
    assert cluster["state"] == "ACTIVE"

    ops = json.loads(_cli(stack, org, "ops", "list", "--cluster", cluster["clusterId"], "-o", "json").stdout)
    (operation,) = ops["operations"]
    shown = _cli(stack, org, "ops", "get", operation["operationId"])
    assert shown.returncode == 0
    assert "SUCCEEDED" in shown.stdout

    # A permanent failure: JSON lines (the accepted operation, then every event), exit code 1.
    failing = _spec(tmp_path, "cli-2", phaseSeconds=0.05, failAt="NODE_GROUPS")
    done = _cli(stack, org, "clusters", "deploy", "-f", failing, "--follow", "--output", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    accepted, *events = (json.loads(line) for line in done.stdout.splitlines())
    assert events == _events(stack, org, accepted["operationId"])
    assert events[-1]["labels"]["status"] == "FAILED"

    # Watching a finished operation replays it and exits with its outcome.
    assert _cli(stack, org, "ops", "watch", accepted["operationId"], "-o", "json").returncode == 1
    # The API's refusal is an error exit with its code, not a traceback.
    missing = _cli(stack, org, "ops", "get", "op_doesnotexist")
    assert missing.returncode == 5
    assert "404 NOT_FOUND" in missing.stderr


def _wait_for_lines(out: Path, count: int, follower: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(out.read_text().splitlines()) < count:
        assert follower.poll() is None, follower.stderr.read() if follower.stderr else ""
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.05)


def test_cli_resumes_after_the_api_restarts_or_is_killed_mid_deploy(stack: Stack, org: Org, tmp_path: Path) -> None:
    out = tmp_path / "follow.out"
    spec = _spec(tmp_path, "cli-resume", phaseSeconds=1.0)
    with open(out, "w") as stdout:
        follower = subprocess.Popen(
            [sys.executable, "-m", "clusterflow.cli.main", "clusters", "deploy", "-f", spec, "--follow", "-o", "json"],
            env=_cli_env(stack, org),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        _wait_for_lines(out, 4, follower)  # the accepted line and a few events
        # A graceful restart (a rolling deploy of the API): the server ends its streams cleanly.
        assert stop(stack.api) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        stack.api = spawn("api", stack.env, tmp_path / "api-2.log")
        wait_http(f"{stack.url}/healthz", stack.api)
        _wait_for_lines(out, len(out.read_text().splitlines()) + 1, follower)
        # A crash: the connection just breaks.
        kill_hard(stack.api)
        stack.api = spawn("api", stack.env, tmp_path / "api-3.log")
        wait_http(f"{stack.url}/healthz", stack.api)
        stderr = follower.communicate(timeout=90)[1]
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()

    assert follower.returncode == 0, stderr
    assert "the stream ended before the operation did; resuming after event" in stderr
    assert "connection lost" in stderr
    accepted, *events = (json.loads(line) for line in out.read_text().splitlines())
    stored = _events(stack, org, accepted["operationId"])
    assert [e["sequence"] for e in events] == list(range(1, len(stored) + 1))
    assert events == stored
    assert events[-1]["labels"]["status"] == "SUCCEEDED"


def test_cli_updates_deletes_with_approval_cancels_and_manages_keys(stack: Stack, org: Org, tmp_path: Path) -> None:
    deployed = _cli(
        stack, org, "clusters", "deploy", "-f", _spec(tmp_path, "cli-life", phaseSeconds=0.05), "-o", "json"
    )
    assert deployed.returncode == 0, deployed.stderr
    accepted = json.loads(deployed.stdout)
    assert _cli(stack, org, "ops", "watch", accepted["operationId"], "-o", "json").returncode == 0

    update = tmp_path / "update.yaml"
    update.write_text(
        yaml.safe_dump(
            {"apiVersion": "clusterflow.dev/v1", "kind": "K8sClusterUpdate", "spec": {"tags": {"team": "core"}}}
        )
    )
    updated = _cli(stack, org, "clusters", "update", accepted["clusterId"], "-f", str(update), "--follow")
    assert updated.returncode == 0, updated.stdout + updated.stderr

    deletion = _cli(stack, org, "clusters", "delete", accepted["clusterId"], "-o", "json")
    assert deletion.returncode == 0, deletion.stderr
    pending = json.loads(deletion.stdout)
    assert pending["approvalRequired"] is True
    wrong = _cli(stack, org, "approve", pending["operationId"], "--token", "cfa_wrong")
    assert wrong.returncode == 5
    assert "INVALID_APPROVAL_TOKEN" in wrong.stderr
    approved = _cli(
        stack, org, "approve", pending["operationId"], "--token", pending["approvalToken"], "--comment", "ok"
    )
    assert approved.returncode == 0, approved.stderr
    assert _cli(stack, org, "ops", "watch", pending["operationId"]).returncode == 0

    slow = _cli(stack, org, "clusters", "deploy", "-f", _spec(tmp_path, "cli-slow", phaseSeconds=5), "-o", "json")
    slow_op = json.loads(slow.stdout)["operationId"]
    cancelled = _cli(stack, org, "ops", "cancel", slow_op, "--follow")
    assert cancelled.returncode == 3, cancelled.stdout + cancelled.stderr  # CANCELLED
    assert "CANCELLED" in cancelled.stdout

    created = _cli(stack, org, "keys", "create", "--name", "ci", "--role", "viewer", "-o", "json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("cfk_")
    listed = _cli(stack, org, "keys", "list")
    assert key["maskedKey"] in listed.stdout
    assert key["key"] not in listed.stdout
    assert _cli(stack, org, "keys", "revoke", key["id"], "--reason", "rotated").returncode == 0
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        assert client.get("/v1/clusters", headers={"X-API-Key": key["key"]}).status_code == 401


def _as(stack: Stack, org: Org, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clusterflow.cli.main", *args],
        env=_cli_env(stack, org) | {"CLUSTERFLOW_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_lists_what_an_owner_may_decide_and_approves_or_rejects_without_a_token(
    stack: Stack, org: Org, tmp_path: Path
) -> None:
    keys = {}
    for role in ("editor", "owner"):
        created = _cli(stack, org, "keys", "create", "--name", f"team {role}", "--role", role, "-o", "json")
        assert created.returncode == 0, created.stderr
        keys[role] = json.loads(created.stdout)["key"]
    clusters = []
    for name in ("cli-team-a", "cli-team-b"):
        deployed = _cli(stack, org, "clusters", "deploy", "-f", _spec(tmp_path, name, phaseSeconds=0.02), "-o", "json")
        accepted = json.loads(deployed.stdout)
        assert _cli(stack, org, "ops", "watch", accepted["operationId"], "-o", "json").returncode == 0
        clusters.append(accepted["clusterId"])

    # An editor asks; no token is shown to them, and they cannot decide.
    pending = []
    for cluster_id in clusters:
        deletion = _as(stack, org, keys["editor"], "clusters", "delete", cluster_id, "-o", "json")
        assert deletion.returncode == 0, deletion.stderr
        accepted = json.loads(deletion.stdout)
        assert accepted["approvalRequired"] is True and "approvalToken" not in accepted
        pending.append(accepted["operationId"])
    with httpx.Client(base_url=stack.url, headers=org.headers(), timeout=10) as client:
        deadline = time.monotonic() + 30
        while any(client.get(f"/v1/operations/{op}").json()["data"]["status"] != "AWAITING_APPROVAL" for op in pending):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    refused = _as(stack, org, keys["editor"], "approve", pending[0])
    assert refused.returncode == 5 and "403" in refused.stderr + refused.stdout, refused.stderr

    listed = _as(stack, org, keys["owner"], "ops", "list", "--awaiting-approval", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(o["operationId"] for o in json.loads(listed.stdout)["operations"]) == sorted(pending)
    table = _as(stack, org, keys["owner"], "ops", "list", "--awaiting-approval")
    assert pending[0] in table.stdout and "0/1" in table.stdout and "default" in table.stdout
    assert _as(stack, org, keys["editor"], "ops", "list", "--awaiting-approval", "-o", "json").stdout.count("op_") == 0

    approved = _as(stack, org, keys["owner"], "approve", pending[0], "--comment", "retired", "-o", "json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "RUNNING"
    rejected = _as(stack, org, keys["owner"], "reject", pending[1], "--comment", "still in use", "-o", "json")
    assert rejected.returncode == 0, rejected.stderr
    assert json.loads(rejected.stdout)["status"] == "REJECTED"
    assert _cli(stack, org, "ops", "watch", pending[0]).returncode == 0  # SUCCEEDED
    assert _cli(stack, org, "ops", "watch", pending[1]).returncode == 4  # REJECTED
    again = _as(stack, org, keys["owner"], "approve", pending[0])
    assert again.returncode == 5  # decided already
    left = _as(stack, org, keys["owner"], "ops", "list", "--awaiting-approval", "-o", "json")
    assert json.loads(left.stdout)["operations"] == []
