"""The probes' answers, and the platform issuer's OIDC documents."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["ok"]


class ReadinessChecks(BaseModel):
    database: str = Field(description="`ok`, or `unavailable: <error type>`")
    temporal: str = Field(description="`ok`, or `unavailable: <error type>`")


class Readiness(BaseModel):
    """200 with `ready` when every check is `ok`, else 503 with `not ready`."""

    status: Literal["ready", "not ready"]
    checks: ReadinessChecks


class OidcDiscovery(BaseModel):
    issuer: str
    jwks_uri: str
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    claims_supported: list[str]


class JsonWebKey(BaseModel):
    kty: Literal["RSA"]
    use: Literal["sig"]
    alg: Literal["RS256"]
    kid: str
    n: str
    e: str


class JsonWebKeySet(BaseModel):
    keys: list[JsonWebKey]
