"""Pure pieces of running in production: Temporal connection options, sealed secrets, webhook
signatures, the notification topics the API documents, and the start-up checks that refuse
settings unsafe beyond loopback (one of them through the real `clusterflow api` process)."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from temporalio.service import TLSConfig

from clusterflow import startup_checks, vault
from clusterflow.api.schemas.notifications import Topic
from clusterflow.contracts.notifications import TOPICS
from clusterflow.settings import Settings
from clusterflow.temporal_connect import connect_options
from clusterflow.vault import dev_vault_keys
from clusterflow.webhooks import SignatureError, sign, verify_signature


def test_the_api_documents_every_topic() -> None:
    assert set(typing.get_args(Topic)) == set(TOPICS)


def test_local_temporal_needs_no_tls() -> None:
    options = connect_options(Settings(temporal_address="localhost:7233"))
    assert options["tls"] is False and options["api_key"] is None and options["interceptors"] == []


def test_temporal_cloud_with_mtls_files(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_bytes(b"CERT")
    (tmp_path / "tls.key").write_bytes(b"KEY")
    settings = Settings(
        temporal_address="ns.acct.tmprl.cloud:7233",
        temporal_namespace="ns.acct",
        temporal_tls_cert=tmp_path / "tls.crt",
        temporal_tls_key=tmp_path / "tls.key",
    )
    options = connect_options(settings)
    assert options["namespace"] == "ns.acct"
    assert isinstance(options["tls"], TLSConfig)
    assert (options["tls"].client_cert, options["tls"].client_private_key) == (b"CERT", b"KEY")


def test_temporal_cloud_with_an_api_key_turns_tls_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_API_KEY", "tmprl-key")
    options = connect_options(Settings(temporal_address="us-east-1.aws.api.temporal.io:7233"))
    assert options["api_key"] == "tmprl-key"
    assert isinstance(options["tls"], TLSConfig)
    assert "tmprl-key" not in repr(Settings())  # a SecretStr never prints


def test_tracing_adds_the_temporal_interceptor_only_when_configured() -> None:
    options = connect_options(Settings(otel_exporter_otlp_endpoint="http://collector:4318"))
    assert [type(i).__name__ for i in options["interceptors"]] == ["TracingInterceptor"]


def test_sealed_secrets_open_only_with_their_key_and_context(tmp_path: Path) -> None:
    settings = Settings(vault_keys=json.loads(dev_vault_keys(tmp_path)))
    sealed = vault.seal_bytes(settings, b"whsec_abc", "org_1:webhook")
    assert b"whsec_abc" not in sealed
    assert vault.open_bytes(settings, sealed, "org_1:webhook") == b"whsec_abc"
    with pytest.raises(InvalidTag):
        vault.open_bytes(settings, sealed, "org_2:webhook")
    other = Settings(vault_keys={"dev": base64.b64encode(b"x" * 32).decode()})
    with pytest.raises(InvalidTag):
        vault.open_bytes(other, sealed, "org_1:webhook")
    with pytest.raises(vault.VaultNotConfigured):
        vault.seal_bytes(Settings(), b"x", "c")


def test_webhook_signatures_verify_and_refuse_replays_and_tampering() -> None:
    body = b'{"specversion":"1.0","id":"evt_1"}'
    header = sign("whsec_s", body, timestamp=1_700_000_000)
    assert verify_signature("whsec_s", header, body, now=1_700_000_100) == 1_700_000_000
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature("whsec_s", header, body, now=1_700_000_000 + 301)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("whsec_s", header, body + b" ", now=1_700_000_000)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("whsec_other", header, body, now=1_700_000_000)
    with pytest.raises(SignatureError):
        verify_signature("whsec_s", None, body)
    # During a secret rotation a sender may sign with both; either verifies.
    rotated = header + "," + sign("whsec_new", body, timestamp=1_700_000_000).split(",")[1]
    assert verify_signature("whsec_new", rotated, body, now=1_700_000_000)


# --- start-up checks (startup_checks.py) --------------------------------------------------------

VAULT = {"k1": base64.b64encode(b"k" * 32).decode()}
SAFE_BEYOND_LOOPBACK: dict[str, object] = {
    "api_host": "0.0.0.0",  # noqa: S104 - a setting under test, nothing binds
    "public_url": "https://clusterflow.example.com",
    "vault_keys": VAULT,
    "enabled_providers": ["local", "aws", "gcp", "azure"],
}


def beyond_loopback(**changes: object) -> Settings:
    return Settings(**(SAFE_BEYOND_LOOPBACK | changes))  # type: ignore[arg-type]


def test_a_safe_installation_beyond_loopback_starts_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    settings = beyond_loopback()
    assert startup_checks.problems(settings) == []
    assert startup_checks.loopback_warning(settings) is None
    with caplog.at_level(logging.WARNING):
        startup_checks.enforce(settings, "api")
    assert caplog.records == []


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"vault_keys": {}}, "CLUSTERFLOW_VAULT_KEYS is empty"),
        ({"vault_keys": {"k1": "c2hvcnQ="}}, "key 'k1' is not base64 of 32 bytes"),
        ({"vault_keys": {"k1": "not base64!"}}, "key 'k1' is not base64 of 32 bytes"),
        ({"vault_keys": VAULT | {"k2": VAULT["k1"]}}, "CLUSTERFLOW_VAULT_ACTIVE_KEY_ID is unset"),
        ({"vault_active_key_id": "k9"}, "'k9' is not a key ID"),
        ({"public_url": None, "enabled_providers": ["aws"]}, "CLUSTERFLOW_PUBLIC_URL is unset while the API binds"),
        ({"public_url": "https://127.0.0.1:8443"}, "points at this machine only"),
        ({"public_url": "http://localhost:8080", "enabled_providers": ["local"]}, "points at this machine only"),
        ({"public_url": "http://0.0.0.0:8080", "enabled_providers": ["local"]}, "points at this machine only"),
        ({"api_host": "10.0.3.7", "public_url": "https://[::1]/"}, "points at this machine only"),
        ({"public_url": "http://clusterflow.example.com"}, "is not https while azure and gcp are enabled"),
        ({"public_url": "http://cf.example.com", "enabled_providers": ["azure"]}, "while azure is enabled"),
        ({"platform_oidc_issuer": "http://issuer.example.com"}, "(CLUSTERFLOW_PLATFORM_OIDC_ISSUER) is not https"),
    ],
)
def test_each_unsafe_setting_beyond_loopback_is_refused_by_name(changes: dict[str, object], named: str) -> None:
    found = startup_checks.problems(beyond_loopback(**changes))
    assert len(found) == 1 and named in found[0], found


def test_every_problem_is_named_at_once_and_the_process_exits_non_zero(caplog: pytest.LogCaptureFixture) -> None:
    settings = beyond_loopback(vault_keys={}, public_url=None)
    with caplog.at_level(logging.CRITICAL), pytest.raises(SystemExit) as exited:
        startup_checks.enforce(settings, "worker")
    assert exited.value.code == 2
    message = caplog.records[-1].getMessage()
    assert message.startswith("clusterflow worker refuses to start")
    assert "CLUSTERFLOW_VAULT_KEYS" in message and "CLUSTERFLOW_PUBLIC_URL" in message
    assert "OIDC issuer http://0.0.0.0:8080" in message  # the issuer defaults to the public URL


def test_an_http_issuer_is_fine_when_no_cloud_trusts_it() -> None:
    assert startup_checks.problems(beyond_loopback(public_url="http://cf.internal", enabled_providers=["aws"])) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_on_loopback_nothing_is_refused(host: str) -> None:
    assert startup_checks.problems(Settings(api_host=host, enabled_providers=["local", "gcp"])) == []


def test_on_loopback_without_a_public_url_one_warning_says_what_points_at_127_0_0_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        startup_checks.enforce(Settings(api_port=8080), "api")
    assert len(caplog.records) == 1
    warning = caplog.records[0].getMessage()
    assert "CLUSTERFLOW_PUBLIC_URL is unset" in warning and "http://127.0.0.1:8080" in warning
    assert "agent manifests" in warning and "OIDC issuer" in warning
    named = Settings(platform_oidc_issuer="https://issuer.example.com")
    assert "OIDC" not in (startup_checks.loopback_warning(named) or "")
    assert startup_checks.loopback_warning(Settings(public_url="http://127.0.0.1:8080")) is None


def test_the_api_process_refuses_to_start_with_the_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERFLOW_", "DATABASE_URL", "TEMPORAL_"))}
    # Refused before anything binds or connects (the addresses below lead nowhere).
    env |= {"CLUSTERFLOW_API_HOST": "0.0.0.0", "CLUSTERFLOW_API_PORT": "1"}  # noqa: S104
    env |= {"CLUSTERFLOW_STATE_DIR": str(tmp_path)}
    env |= {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    result = subprocess.run(
        [sys.executable, "-m", "clusterflow.cli.main", "api"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "clusterflow api refuses to start" in result.stderr
    assert "CLUSTERFLOW_VAULT_KEYS is empty" in result.stderr and "CLUSTERFLOW_PUBLIC_URL is unset" in result.stderr
    assert "Traceback" not in result.stderr
