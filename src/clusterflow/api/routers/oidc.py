"""The platform's OIDC discovery document and keys, which connected clouds fetch to verify the
tokens workers present (see `clusterflow.oidc`). Public: they hold no secret."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from clusterflow import oidc
from clusterflow.api.deps import AppSettings
from clusterflow.api.schemas.health import JsonWebKeySet, OidcDiscovery

router = APIRouter(tags=["oidc"])


@router.get(
    "/.well-known/openid-configuration", summary="OIDC discovery of the platform issuer", response_model=OidcDiscovery
)
async def openid_configuration(settings: AppSettings) -> dict[str, Any]:
    return oidc.discovery(settings)


@router.get("/.well-known/jwks.json", summary="Keys that sign the platform's tokens", response_model=JsonWebKeySet)
async def jwks(settings: AppSettings) -> dict[str, Any]:
    return oidc.jwks(settings)
