"""Pure pieces of running in production: Temporal connection options, sealed secrets, webhook
signatures, and the notification topics the API documents."""

from __future__ import annotations

import base64
import json
import typing
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from temporalio.service import TLSConfig

from clusterflow import vault
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
