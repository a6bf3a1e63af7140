"""Sealing secrets at rest: AES-GCM, bound to their row, with keys that rotate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from clusterflow.api.routers.registration import duration_seconds
from clusterflow.settings import Settings
from clusterflow.vault import Sealer, VaultNotConfigured, dev_vault_keys


def test_old_rows_open_after_the_active_key_rotates() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    sealed = Sealer({"k1": k1}, None).seal(b"secret", "org:a")
    rotated = Sealer({"k1": k1, "k2": k2}, "k2")
    assert rotated.open(sealed, "org:a") == b"secret"
    assert rotated.seal(b"secret", "org:a").key_id == "k2"


def test_a_ciphertext_moved_to_another_row_does_not_open() -> None:
    sealer = Sealer({"k1": os.urandom(32)}, None)
    sealed = sealer.seal(b"secret", "org:a")
    assert b"secret" not in sealed.ciphertext
    with pytest.raises(InvalidTag):
        sealer.open(sealed, "org:b")


def test_without_a_key_nothing_is_sealed() -> None:
    with pytest.raises(VaultNotConfigured):
        Sealer({}, None).seal(b"x", "a")
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer({"short": b"x"}, None)


@pytest.mark.parametrize(
    ("value", "seconds"), [("1h", 3600), ("30m", 1800), ("1h30m", 5400), ("24h", 86400), (3_600_000_000_000, 3600)]
)
def test_kubeconfig_durations_read_go_syntax_and_nanoseconds(value: str | int, seconds: int) -> None:
    assert duration_seconds(value) == seconds


def test_the_dev_stack_key_is_made_once_kept_private_and_usable(tmp_path: Path) -> None:
    first = dev_vault_keys(tmp_path)
    assert dev_vault_keys(tmp_path) == first
    assert (tmp_path / "vault.key").stat().st_mode & 0o777 == 0o600
    sealer = Sealer.from_settings(Settings(vault_keys=json.loads(first)))
    assert sealer.open(sealer.seal(b"v", "a"), "a") == b"v"
