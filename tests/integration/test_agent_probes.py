"""The agent as the manifest runs it: the registration token from the mounted Secret file (no
token in the environment), and the probe endpoint the kubelet calls. `/healthz` answers while
the process runs; `/readyz` only while it holds a session with the control plane, so it turns
ready once the registration succeeds and unready when the control plane goes away, while
liveness stays green (a control-plane outage must not restart every agent).

A real `clusterflow-agent` process against the real API (uvicorn, real WebSocket), a real
worker, and the fake kube API.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clusterflow.devstack.postgres import free_port
from clusterflow.settings import Settings
from tests.agent_support import (
    AGENT_NAMESPACE,
    manifest_documents,
    registration_overrides,
    serve_api,
    token_from_manifest,
)
from tests.conftest import Org, Services, test_settings
from tests.fakes.kube_api import FakeKubeApi
from tests.helpers import wait_for_operation

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def settings(services: Services) -> Settings:
    return test_settings(services, **registration_overrides())


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as fake:
        fake.add_namespace(AGENT_NAMESPACE)
        yield fake


async def _status(url: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code
    except httpx.HTTPError:
        return None


async def _until(url: str, status: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await _status(url)) != status:
        assert time.monotonic() < deadline, f"{url} answered {seen}, not {status}, for {timeout} s"
        await asyncio.sleep(0.1)


@pytest.fixture
def agent_env(kube: FakeKubeApi, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "CLUSTERFLOW_"))}
    return env | {
        "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "agent.kubeconfig")),
        "CLUSTERFLOW_AGENT_NAMESPACE": AGENT_NAMESPACE,
        "CLUSTERFLOW_AGENT_BACKOFF_MAX_SECONDS": "1",
        "CLUSTERFLOW_AGENT_HEALTH_PORT": str(free_port()),
    }


async def test_the_agent_reads_its_token_file_and_its_probes_follow_the_connection(
    settings: Settings, org: Org, agent_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    health = f"http://127.0.0.1:{agent_env['CLUSTERFLOW_AGENT_HEALTH_PORT']}"
    async with serve_api(settings, port) as served:
        response = await served.client.post(
            "/v1/clusters/probed/register", json={"architecture": "amd64"}, headers=org.headers()
        )
        assert response.status_code == 202, response.text
        accepted = response.json()["data"]
        container = next(d for d in manifest_documents(accepted) if d["kind"] == "Deployment")["spec"]["template"][
            "spec"
        ]["containers"][0]
        manifest_env = {e["name"]: e.get("value") for e in container["env"]}
        # Mounted as the kubelet mounts the Secret: one file per key, under the manifest's path.
        token_file = tmp_path / "registration" / Path(manifest_env["CLUSTERFLOW_REGISTRATION_TOKEN_FILE"]).name
        token_file.parent.mkdir()
        token_file.write_text(token_from_manifest(accepted))
        env = agent_env | {"CLUSTERFLOW_URL": served.url, "CLUSTERFLOW_REGISTRATION_TOKEN_FILE": str(token_file)}
        log = tmp_path / "agent.log"
        with open(log, "ab") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "clusterflow.agent.main"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            record = await wait_for_operation(served.client, org.headers(), accepted["operationId"])
            assert record["status"] == "SUCCEEDED", (record, log.read_text())
            await _until(f"{health}/readyz", 200)
            assert await _status(f"{health}/healthz") == 200
            assert await _status(f"{health}/metrics") == 404
        except BaseException:
            agent.kill()
            agent.wait()
            raise
    try:
        # The control plane is gone: the agent redials, unready but alive.
        await _until(f"{health}/readyz", 503)
        assert await _status(f"{health}/healthz") == 200
        async with serve_api(settings, port):
            await _until(f"{health}/readyz", 200)  # it redialled with the credential it stored
    finally:
        agent.terminate()
        assert agent.wait(15) == 0, log.read_text()
    assert token_from_manifest(accepted) not in log.read_text()
