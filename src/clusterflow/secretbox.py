"""Encryption of stored secrets that must be recovered later (webhook signing secrets, Slack URLs).

A secret we only need to *check* is hashed (API keys, approval tokens). A secret we must *use*
again, like the key that signs each webhook, cannot be hashed, so it is sealed with AES-256-GCM
under `CLUSTERFLOW_SECRETS_KEY` and bound (associated data) to the row it belongs to, so a
ciphertext copied into another organization's row does not open. The key never reaches the
database; rotating it means re-sealing (not automated yet).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class SecretsKeyMissing(RuntimeError):
    """No `CLUSTERFLOW_SECRETS_KEY`: secrets cannot be stored or used."""


def generate_key() -> str:
    """A new key in the form the setting takes (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _key_bytes(key: str | None) -> bytes:
    if not key:
        raise SecretsKeyMissing("CLUSTERFLOW_SECRETS_KEY is not set")
    raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    if len(raw) != 32:
        raise SecretsKeyMissing("CLUSTERFLOW_SECRETS_KEY must be 32 bytes, URL-safe base64")
    return raw


def seal(key: str | None, plaintext: bytes, context: str) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(_key_bytes(key)).encrypt(nonce, plaintext, context.encode())


def open_sealed(key: str | None, sealed: bytes, context: str) -> bytes:
    return AESGCM(_key_bytes(key)).decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode())


def mac(key: str | None, purpose: str, message: str) -> str:
    """A URL-safe MAC of `message` under a subkey for `purpose` (e.g. unsubscribe links)."""
    subkey = hmac.new(_key_bytes(key), purpose.encode(), hashlib.sha256).digest()
    digest = hmac.new(subkey, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
