"""The platform's own OIDC identity, which customers' clouds trust instead of stored keys.

Cloud connect for GCP (Workload Identity Federation) and Azure (federated identity
credentials) works without any customer secret: the customer's cloud is told to trust tokens
issued by this control plane (`issuer`) for one subject per connected account. Workers mint a
short-lived RS256 token for that subject and exchange it for cloud credentials; the API serves
the discovery document and JWKS the clouds use to verify it.

The signing key comes from settings; when unset (dev stack), one is generated once and kept in
the state directory, so every process on the machine signs with the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from clusterflow.settings import Settings

GCP_TOKEN_TTL_SECONDS = 600
AZURE_AUDIENCE = "api://AzureADTokenExchange"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@lru_cache(maxsize=8)
def _load_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the platform OIDC signing key must be an RSA private key")
    return key


def signing_key_pem(settings: Settings) -> bytes:
    if settings.platform_oidc_signing_key is not None:
        return settings.platform_oidc_signing_key.get_secret_value().encode()
    path = Path(settings.state_dir) / "oidc-signing-key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pem)
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_bytes()


def issuer(settings: Settings) -> str:
    return (settings.platform_oidc_issuer or settings.api_url).rstrip("/")


def _kid(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def subject(organization_id: str, account_id: str) -> str:
    """The one subject a customer's cloud trusts: this organization's connected account."""
    return f"clusterflow:{organization_id}:{account_id}"


def mint(settings: Settings, sub: str, audience: str, ttl_seconds: int = GCP_TOKEN_TTL_SECONDS) -> str:
    key = _load_key(signing_key_pem(settings))
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": _kid(key)}
    claims = {"iss": issuer(settings), "sub": sub, "aud": audience, "iat": now, "nbf": now, "exp": now + ttl_seconds}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def jwks(settings: Settings) -> dict[str, Any]:
    key = _load_key(signing_key_pem(settings))
    numbers = key.public_key().public_numbers()

    def as_b64(value: int) -> str:
        return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {
        "keys": [
            {
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": _kid(key),
                "n": as_b64(numbers.n),
                "e": as_b64(numbers.e),
            }
        ]
    }


def discovery(settings: Settings) -> dict[str, Any]:
    base = issuer(settings)
    return {
        "issuer": base,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["iss", "sub", "aud", "iat", "exp"],
    }


def callback_token(settings: Settings, account_id: str) -> str:
    """A per-account token the setup script presents when it reports back; derived, not stored."""
    digest = hmac.new(signing_key_pem(settings), f"cloud-connect-callback:{account_id}".encode(), hashlib.sha256)
    return digest.hexdigest()


def callback_token_ok(settings: Settings, account_id: str, token: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII text, and the token is caller input.
    return hmac.compare_digest(callback_token(settings, account_id).encode(), token.encode())
