"""What the registered-cluster tests share: the API served on a real port (agents dial it over
a real WebSocket), the agent as a real subprocess, and reading the manifest it is installed by."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from clusterflow.api.app import create_app
from clusterflow.devstack.postgres import free_port
from clusterflow.settings import Settings
from tests.fakes.kube_api import FakeKubeApi

AGENT_NAMESPACE = "clusterflow-agent"
VAULT_KEY = base64.b64encode(b"k" * 32).decode()


def registration_overrides(**extra: Any) -> dict[str, Any]:
    """Fast heartbeats and monitors, and a vault key, for the registered-cluster tests."""
    values: dict[str, Any] = {
        "agent_heartbeat_seconds": 0.3,
        "agent_disconnect_after_seconds": 1.5,
        "agent_monitor_interval_seconds": 0.2,
        "agent_command_poll_seconds": 0.1,
        "agent_uninstall_wait_seconds": 20.0,
        "kubeconfig_timeout_seconds": 30.0,
        "registration_timeout_seconds": 60.0,
        "vault_keys": {"k1": VAULT_KEY},
    }
    values.update(extra)
    return values


@dataclass
class ServedApi:
    url: str
    client: httpx.AsyncClient


@asynccontextmanager
async def serve_api(settings: Settings, port: int | None = None) -> AsyncIterator[ServedApi]:
    """The real app under uvicorn on a free (or the given) port, in this event loop."""
    port = port or free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="websockets-sansio",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the API did not start"
        await asyncio.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield ServedApi(url, client)
    finally:
        server.should_exit = True
        await task


def manifest_documents(registration: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(registration["manifest"]) if d]


def token_from_manifest(registration: dict[str, Any]) -> str:
    """The registration token, read from the manifest's Secret as the Deployment reads it."""
    for doc in manifest_documents(registration):
        if doc["kind"] == "Secret":
            return str(doc["stringData"]["token"])
    raise AssertionError("no Secret in the manifest")


class AgentProcess:
    """`clusterflow-agent` as a real process, against a fake kube API."""

    def __init__(self, kube: FakeKubeApi, api_url: str, token: str | None, workdir: Path, name: str = "agent") -> None:
        if AGENT_NAMESPACE not in kube.state.namespaces:
            kube.add_namespace(AGENT_NAMESPACE)
        kubeconfig = kube.write_kubeconfig(workdir / f"{name}.kubeconfig")
        self.log = workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "CLUSTERFLOW_"))}
        env.update(
            {
                "CLUSTERFLOW_URL": api_url,
                "KUBECONFIG": str(kubeconfig),
                "CLUSTERFLOW_AGENT_NAMESPACE": AGENT_NAMESPACE,
                "CLUSTERFLOW_AGENT_BACKOFF_MAX_SECONDS": "1",
                "CLUSTERFLOW_LOG_LEVEL": "DEBUG",
            }
        )
        if token:
            env["CLUSTERFLOW_REGISTRATION_TOKEN"] = token
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clusterflow.agent.main"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text()

    async def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"agent still running after {timeout}s:\n{self.output()}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    async def stop(self) -> None:
        """SIGTERM, then wait without blocking the loop: the API serving the agent's socket
        runs in this loop and must answer its closing handshake."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await self.wait_exit(timeout=10)
            except AssertionError:
                self.process.kill()
                self.process.wait()


async def eventually(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout}s")
        await asyncio.sleep(0.05)
