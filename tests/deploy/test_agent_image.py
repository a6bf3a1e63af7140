"""The agent image (`deploy/agent.Dockerfile`) is the one the agent manifest expects, and builds.

Without docker: the Dockerfile's user, entry point and port are the manifest's, and the agent
imports nothing but the standard library, the kubernetes client and websockets, which is all
the image installs (a server dependency imported by the agent would only fail in a cluster).
With a docker daemon (CI machines that have one): the image builds for amd64 and arm64 with
buildx, and the native one starts and stops as the agent does without its configuration.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from clusterflow.agent.health import DEFAULT_PORT
from clusterflow.api.agent_manifest import AGENT_UID, agent_manifest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "agent.Dockerfile"

SERVER_ONLY = ["fastapi", "starlette", "pydantic", "pydantic_settings", "temporalio", "asyncpg", "boto3", "botocore"]
SERVER_ONLY += ["httpx", "uvicorn", "prometheus_client", "rich", "azure", "google.cloud", "opentelemetry"]


def _container() -> dict[str, object]:
    docs = agent_manifest(
        cluster_name="c", url="https://cp.example.com", token="t", architecture="amd64", namespace="ns", image="a:1"
    )
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container: dict[str, object] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_dockerfile_runs_what_the_manifest_expects() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(rf"^USER {AGENT_UID}:{AGENT_UID}$", text, re.M)
    assert re.search(rf"^EXPOSE {DEFAULT_PORT}$", text, re.M)
    assert 'ENTRYPOINT ["clusterflow-agent"]' in text and _container()["command"] == ["clusterflow-agent"]
    assert "--platform linux/amd64,linux/arm64" in text  # the documented build
    assert "--platform linux/amd64,linux/arm64" in (ROOT / "README.md").read_text()


def test_the_agent_imports_nothing_the_image_does_not_install() -> None:
    blocker = f"""
import importlib.abc, sys
BLOCKED = {SERVER_ONLY!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"the agent image does not install {{name}}")
sys.meta_path.insert(0, Block())
import clusterflow.agent.main, clusterflow.agent.health, clusterflow.agent.kube
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def _docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return "no docker daemon is reachable (docker info failed)"
    buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, timeout=30)
    if buildx.returncode != 0:
        return "docker buildx is not installed"
    return None


DOCKER_MISSING = _docker_unavailable()


def _builder_lacks_platforms() -> str | None:
    if DOCKER_MISSING is not None:
        return DOCKER_MISSING
    command = ["docker", "buildx", "inspect", "--bootstrap"]
    inspect = subprocess.run(command, capture_output=True, text=True, timeout=300)
    platforms = re.search(r"^Platforms:\s*(.*)$", inspect.stdout, re.M)
    offered = {p.strip().split("*")[0] for p in (platforms.group(1) if platforms else "").split(",")}
    missing = {"linux/amd64", "linux/arm64"} - offered
    if inspect.returncode != 0 or missing:
        return f"the buildx builder cannot build {', '.join(sorted(missing)) or 'here'} (add QEMU: binfmt)"
    return None


@pytest.mark.skipif(DOCKER_MISSING is not None, reason=f"the agent image is not built here: {DOCKER_MISSING}")
def test_the_agent_image_builds_and_starts() -> None:
    tag = f"clusterflow-agent-test:{uuid.uuid4().hex[:8]}"
    build = ["docker", "buildx", "build", "-f", str(DOCKERFILE), "--load", "-t", tag, str(ROOT)]
    native = subprocess.run(build, capture_output=True, text=True, timeout=1800)
    assert native.returncode == 0, native.stderr[-4000:]
    try:
        run = subprocess.run(["docker", "run", "--rm", tag], capture_output=True, text=True, timeout=120)
        # Imports resolved and the agent ran: it stops at once, naming what it lacks.
        assert run.returncode == 1 and "CLUSTERFLOW_URL is not set" in run.stderr, run.stderr
        user = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Config.User}}", tag], capture_output=True, text=True, timeout=60
        )
        assert user.stdout.strip() == f"{AGENT_UID}:{AGENT_UID}"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)


def test_the_agent_image_builds_for_amd64_and_arm64() -> None:
    reason = _builder_lacks_platforms()
    if reason is not None:
        pytest.skip(f"the multi-architecture image is not built here: {reason}")
    both = subprocess.run(
        ["docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64", "-f", str(DOCKERFILE), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert both.returncode == 0, both.stderr[-4000:]
