"""Encryption at rest for secrets the control plane must use again (vault credentials,
kubeconfigs, webhook signing secrets, Slack URLs), and MACs for links we hand out.

A secret we only need to *check* is hashed instead (API keys, approval tokens).

AES-256-GCM with keys from settings (`CLUSTERFLOW_VAULT_KEYS`, a JSON map of key ID to a
base64 32-byte key). Each ciphertext is stored with the ID of the key that sealed it, so keys
rotate by adding a new key and making it active: old rows still open with their own key, new
rows use the new one. The associated data binds a ciphertext to its row (organization and
name), so a ciphertext copied into another row does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clusterflow.settings import Settings


class VaultNotConfigured(Exception):
    """No encryption key is configured, so nothing secret can be stored."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class Sealer:
    def __init__(self, keys: dict[str, bytes], active_key_id: str | None) -> None:
        for key_id, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"vault key {key_id!r} must be 32 bytes (base64 of 32 random bytes)")
        if active_key_id is None and len(keys) == 1:
            active_key_id = next(iter(keys))
        if active_key_id is not None and active_key_id not in keys:
            raise ValueError(f"active vault key {active_key_id!r} is not among the configured keys")
        self._keys = keys
        self.active_key_id = active_key_id

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        keys = {key_id: base64.b64decode(value.get_secret_value()) for key_id, value in settings.vault_keys.items()}
        return cls(keys, settings.vault_active_key_id)

    @property
    def configured(self) -> bool:
        return self.active_key_id is not None

    def seal(self, plaintext: bytes, associated: str) -> Sealed:
        if self.active_key_id is None:
            raise VaultNotConfigured("no vault key is configured (CLUSTERFLOW_VAULT_KEYS)")
        nonce = os.urandom(12)
        ciphertext = AESGCM(self._keys[self.active_key_id]).encrypt(nonce, plaintext, associated.encode())
        return Sealed(self.active_key_id, nonce, ciphertext)

    def mac(self, purpose: str, message: str) -> str:
        """A URL-safe MAC of `message` under the active key, separated by `purpose`."""
        if self.active_key_id is None:
            raise VaultNotConfigured("no vault key is configured (CLUSTERFLOW_VAULT_KEYS)")
        subkey = hmac.new(self._keys[self.active_key_id], purpose.encode(), hashlib.sha256).digest()
        digest = hmac.new(subkey, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def open(self, sealed: Sealed, associated: str) -> bytes:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise VaultNotConfigured(f"vault key {sealed.key_id!r} is no longer configured")
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, associated.encode())


def seal_bytes(settings: Settings, plaintext: bytes, associated: str) -> bytes:
    """Seal into one blob for a bytea column: key ID length, key ID, nonce, ciphertext."""
    sealed = Sealer.from_settings(settings).seal(plaintext, associated)
    key_id = sealed.key_id.encode()
    return bytes([len(key_id)]) + key_id + sealed.nonce + sealed.ciphertext


def open_bytes(settings: Settings, blob: bytes, associated: str) -> bytes:
    size = blob[0]
    key_id, rest = blob[1 : 1 + size].decode(), blob[1 + size :]
    return Sealer.from_settings(settings).open(Sealed(key_id, rest[:12], rest[12:]), associated)


def dev_vault_keys(state_dir: Path) -> str:
    """`CLUSTERFLOW_VAULT_KEYS` for the dev stack: one key made on first use and kept (0600)
    in the state directory, so secrets stored by one `make run` open in the next."""
    path = state_dir / "vault.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(os.urandom(32)).decode())
    return json.dumps({"dev": path.read_text().strip()})
