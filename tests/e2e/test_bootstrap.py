"""An installation from nothing, as an SRE does it: `clusterflow admin bootstrap` against an empty
PostgreSQL database, then the real `clusterflow api` and `worker` processes, then a deploy with
the key the command printed. Running it again creates nothing; `--rotate` retires the key; with
`--key-secret` (the Kubernetes Job) the key goes to a Secret, through the real `kubernetes`
client against the fake kube API, and never to the output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from clusterflow.devstack.postgres import free_port
from tests.conftest import Services, test_settings
from tests.fakes.kube_api import FakeKubeApi
from tests.helpers import deploy_document, wait_for_operation
from tests.processes import settings_env, spawn, stop, wait_http

KEY = re.compile(r"^cfk_[A-Za-z0-9]+$", re.M)
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERFLOW_", "KUBE", "DATABASE_URL"))}


async def _empty_database(services: Services) -> str:
    name = f"install_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return services.database_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
async def empty_db(services: Services) -> str:
    return await _empty_database(services)


def bootstrap(dsn: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clusterflow.cli.main", "admin", "bootstrap", *args],
        env={**CLEAN_ENV, **(env or {}), "DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Installation:
    """The empty database, and the API and a worker started on it once the test has bootstrapped it."""

    services: Services
    dsn: str
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> str:
        settings = test_settings(self.services, database_url=self.dsn, local_phase_seconds=0.05)
        port = free_port()
        env = settings_env(settings, CLUSTERFLOW_API_PORT=str(port))
        self.processes.append(spawn("worker", env, self.logs / "worker.log"))
        api = spawn("api", env, self.logs / "api.log")
        self.processes.append(api)
        wait_http(f"http://127.0.0.1:{port}/healthz", api)
        return f"http://127.0.0.1:{port}"


@pytest.fixture
def installation(services: Services, empty_db: str, tmp_path: Path) -> Iterator[Installation]:
    stack = Installation(services, empty_db, tmp_path)
    try:
        yield stack
    finally:
        for process in stack.processes:
            stop(process)


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_bootstrap_an_empty_database_then_deploy_with_the_printed_key(installation: Installation) -> None:
    dsn = installation.dsn
    first = bootstrap(dsn, "--org", "acme", "--owner-email", "sre@acme.example")
    assert first.returncode == 0, first.stderr
    keys = KEY.findall(first.stdout)
    assert len(keys) == 1, first.stdout
    owner_key = keys[0]
    assert "0001_spine.sql" in first.stdout and "created organization 'acme'" in first.stdout
    assert owner_key not in first.stderr

    url = installation.start()
    headers = {"Authorization": f"Bearer {owner_key}"}
    async with httpx.AsyncClient(base_url=url, timeout=10) as api:
        me = (await api.get("/v1/whoami", headers=headers)).json()["data"]
        assert me["role"] == "owner"
        members = (await api.get(f"/v1/organizations/{me['organizationId']}/members", headers=headers)).json()
        assert [(m["email"], m["role"]) for m in members["data"]] == [("sre@acme.example", "owner")]
        accepted = await api.post("/v1/clusters", json=deploy_document("first-cluster"), headers=headers)
        assert accepted.status_code == 202, accepted.text
        record = await wait_for_operation(api, headers, accepted.json()["data"]["operationId"])
        assert record["status"] == "SUCCEEDED", record
        cluster = (await api.get(f"/v1/clusters/{accepted.json()['data']['clusterId']}", headers=headers)).json()
        assert cluster["data"]["state"] == "ACTIVE"

        again = bootstrap(dsn, "--org", "acme", "--owner-email", "someone-else@acme.example")
        assert again.returncode == 0, again.stderr
        assert "already exists: nothing created" in again.stdout and not KEY.search(again.stdout)
        assert await _count(dsn, "SELECT count(*) FROM organizations") == 1
        assert await _count(dsn, "SELECT count(*) FROM api_keys") == 1
        assert await _count(dsn, "SELECT count(*) FROM members") == 1
        assert "migrations applied: none pending" in again.stdout

        rotated = bootstrap(dsn, "--org", "acme", "--owner-email", "sre@acme.example", "--rotate")
        assert rotated.returncode == 0, rotated.stderr
        new_key = KEY.findall(rotated.stdout)
        assert len(new_key) == 1 and new_key[0] != owner_key
        assert (await api.get("/v1/whoami", headers=headers)).status_code == 401
        new_headers = {"Authorization": f"Bearer {new_key[0]}"}
        assert (await api.get("/v1/whoami", headers=new_headers)).json()["data"]["organizationId"] == me[
            "organizationId"
        ]
        listed = (await api.get("/v1/api-keys", headers=new_headers)).json()["data"]
        assert sorted((k["status"], k["source"]) for k in listed) == [("ACTIVE", "bootstrap"), ("REVOKED", "bootstrap")]


@pytest.mark.parametrize("bad", [["--org", "", "--owner-email", "a@b.c"], ["--org", "x", "--owner-email", "nobody"]])
async def test_bad_arguments_name_the_option_and_create_nothing(empty_db: str, bad: list[str]) -> None:
    result = bootstrap(empty_db, *bad)
    assert result.returncode == 2
    assert ("--org" if bad[1] == "" else "--owner-email") in result.stderr
    assert await _count(empty_db, "SELECT count(*) FROM pg_tables WHERE tablename = 'organizations'") == 0


def test_an_unreachable_database_is_named_without_its_password() -> None:
    result = bootstrap("postgresql://admin:s3cret-pw@127.0.0.1:1/none", "--org", "x", "--owner-email", "a@b.c")
    assert result.returncode == 1, result.stderr
    assert "PostgreSQL at 127.0.0.1:1 failed" in result.stderr and "Nothing was created" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout and "Traceback" not in result.stderr


async def test_the_job_writes_the_key_to_a_secret_only_if_absent(services: Services, tmp_path: Path) -> None:
    with FakeKubeApi() as kube:
        kube.add_namespace("clusterflow")
        env = {"KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig", "clusterflow"))}
        args = ["--org", "acme", "--owner-email", "sre@acme.example", "--key-secret", "clusterflow-owner-key"]
        args += ["--key-secret-namespace", "clusterflow", "--output", "json"]
        dsn = await _empty_database(services)

        first = bootstrap(dsn, *args, env=env)
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert report["ownerKey"] is None and report["keySecret"] == "clusterflow/clusterflow-owner-key"
        assert not KEY.search(first.stdout + first.stderr)  # the key never reaches the Job's logs
        stored = kube.secret_data("clusterflow", "clusterflow-owner-key")
        assert stored is not None and stored["CLUSTERFLOW_ORGANIZATION_ID"] == report["organizationId"]
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval(
                "SELECT count(*) FROM api_keys WHERE key_hash = sha256($1::text::bytea) AND revoked_at IS NULL",
                stored["CLUSTERFLOW_API_KEY"],
            )
        finally:
            await conn.close()

        # A re-run (the Job retried, or applied again) leaves the Secret and the database alone.
        again = bootstrap(dsn, *args, env=env)
        assert again.returncode == 0 and json.loads(again.stdout)["keyId"] is None
        assert kube.secret_data("clusterflow", "clusterflow-owner-key") == stored

        # The Secret survives from another database: nothing is created there, and it says why.
        other = await _empty_database(services)
        refused = bootstrap(other, *args, env=env)
        assert refused.returncode == 1, refused.stderr
        assert "already exists" in refused.stderr and "Nothing was created" in refused.stderr
        assert await _count(other, "SELECT count(*) FROM organizations") == 0
        assert kube.secret_data("clusterflow", "clusterflow-owner-key") == stored

        rotated = bootstrap(dsn, *args, "--rotate", env=env)
        assert rotated.returncode == 0, rotated.stderr
        replaced = kube.secret_data("clusterflow", "clusterflow-owner-key")
        assert replaced is not None and replaced["CLUSTERFLOW_API_KEY"] != stored["CLUSTERFLOW_API_KEY"]
        assert json.loads(rotated.stdout)["revokedKeyIds"]
