"""Sealed boxes: secrets handed from a worker to one waiting API request, and to nobody else.

Temporary cloud credentials must travel from the activity that obtains them to the request
that asked, but every activity result is persisted in Temporal's history. The request makes an
ephemeral X25519 key pair and sends only the public key; the activity seals the secret to it
(ephemeral-static ECDH, HKDF-SHA256, AES-256-GCM). The private key lives in the request's
memory and dies with it, so what history keeps can never be opened again.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_INFO = b"clusterflow sealed box v1"


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=ephemeral + recipient, info=_INFO).derive(shared)


class Recipient:
    """The receiving side: holds the private key in memory only."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()

    @property
    def public_key(self) -> str:
        return base64.b64encode(_raw(self._private.public_key())).decode()

    def open(self, sealed: str) -> bytes:
        blob = base64.b64decode(sealed)
        ephemeral, nonce, ciphertext = blob[:32], blob[32:44], blob[44:]
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
        key = _key(shared, ephemeral, _raw(self._private.public_key()))
        return AESGCM(key).decrypt(nonce, ciphertext, None)


def seal(recipient_public_key: str, plaintext: bytes) -> str:
    recipient = base64.b64decode(recipient_public_key)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    nonce = os.urandom(12)
    ciphertext = AESGCM(_key(shared, ephemeral_raw, recipient)).encrypt(nonce, plaintext, None)
    return base64.b64encode(ephemeral_raw + nonce + ciphertext).decode()
