"""Webhook signatures: how clusterflow signs each delivery and how a receiver checks one.

Each webhook body is a CloudEvents 1.0 JSON document (structured mode). The signature header is

    X-Clusterflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

Signing the timestamp together with the exact body bytes makes a captured request useless
later: a receiver recomputes the MAC, compares in constant time, and rejects a timestamp older
than its tolerance (default five minutes), so a replay outside that window fails. Within the
window a receiver deduplicates by the CloudEvent `id`, which is the same on every retry of one
event. This module has no dependencies beyond the standard library, so a receiver written in
Python can copy it or import `verify_signature` from it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Clusterflow-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature is missing, malformed, wrong, or too old."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the signature header for `body` signed now (or at `timestamp`)."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a delivery; return its timestamp, or raise SignatureError.

    `body` must be the raw request bytes, before any JSON parsing. Several `v1=` values are
    accepted (one per secret while a secret is being rotated).
    """
    if not header:
        raise SignatureError("missing signature header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        ts = int(parts["t"][0])
    except (KeyError, ValueError) as err:
        raise SignatureError("signature header has no timestamp") from err
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise SignatureError("signature timestamp is outside the tolerance window")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", [])):
        raise SignatureError("signature does not match")
    return ts
