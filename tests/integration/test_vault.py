"""The self-hosted credentials vault: values encrypted at rest, never returned, never logged."""

from __future__ import annotations

import logging

import asyncpg
import httpx
import pytest

from clusterflow.settings import Settings
from tests.agent_support import registration_overrides
from tests.conftest import Org, Services, test_settings

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY-7f3a"


@pytest.fixture
def settings(services: Services) -> Settings:
    return test_settings(services, **registration_overrides())


def credentials_body(cluster: str = "self-1", **extra: object) -> dict[str, object]:
    return {
        "accountId": "123456789012",
        "bucketName": "state-bucket",
        "clusterName": cluster,
        "credentials": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": SECRET},
        "provider": "aws",
        "region": "eu-west-1",
        **extra,
    }


async def test_vault_stores_credentials_encrypted_and_never_returns_or_logs_them(
    api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stored = await api.post("/v1/self-hosted/credentials", json=credentials_body(), headers=org.headers())
    assert stored.status_code == 201, stored.text
    assert stored.json()["data"] == {"clusterName": "self-1", "status": "STORED", "error": None}

    status = await api.get("/v1/self-hosted/credentials/self-1", headers=org.headers())
    assert status.status_code == 200
    data = status.json()["data"]
    assert data["status"] == "STORED"
    assert data["lastValidated"]
    assert data["vaultType"] == "platform-aes-256-gcm"
    assert data["keyId"] == "k1"
    assert "credentials" not in data

    again = await api.post("/v1/self-hosted/credentials", json=credentials_body(), headers=org.headers())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "CREDENTIALS_EXIST"
    forced = await api.post(
        "/v1/self-hosted/credentials", json=credentials_body(forceUpdate=True), headers=org.headers()
    )
    assert forced.status_code == 201

    invalid = await api.post(
        "/v1/self-hosted/credentials", json=credentials_body(provider="ibm"), headers=org.headers()
    )
    assert invalid.status_code == 422

    row = await pool.fetchrow(
        "SELECT * FROM vault_credentials WHERE organization_id = $1 AND cluster_name = 'self-1'", org.id
    )
    assert SECRET.encode() not in bytes(row["ciphertext"])
    assert SECRET not in str(dict(row))
    for response in (stored, status, again, forced, invalid):
        assert SECRET not in response.text
    assert SECRET not in caplog.text

    removed = await api.delete("/v1/self-hosted/credentials/self-1", headers=org.headers())
    assert removed.status_code == 200
    assert (await api.get("/v1/self-hosted/credentials/self-1", headers=org.headers())).status_code == 404


async def test_vault_is_scoped_by_organization_and_role(api: httpx.AsyncClient, org: Org, pool: asyncpg.Pool) -> None:
    from clusterflow.records.organizations import create_api_key, create_organization

    assert (
        await api.post("/v1/self-hosted/credentials", json=credentials_body("self-2"), headers=org.headers())
    ).status_code == 201
    other_org = await create_organization(pool, "vault-other")
    _, other_key = await create_api_key(pool, other_org, "other", "owner")
    other = {"Authorization": f"Bearer {other_key}"}
    assert (await api.get("/v1/self-hosted/credentials/self-2", headers=other)).status_code == 404
    assert (await api.delete("/v1/self-hosted/credentials/self-2", headers=other)).status_code == 404
    _, editor_key = await create_api_key(pool, org.id, "editor", "editor")
    editor = {"Authorization": f"Bearer {editor_key}"}
    assert (
        await api.post("/v1/self-hosted/credentials", json=credentials_body("self-3"), headers=editor)
    ).status_code == 403
