"""How every process connects to Temporal: local dev server, self-hosted cluster with (m)TLS, or
Temporal Cloud with mTLS or an API key, plus the tracing interceptor when tracing is on.

Shared by the API and the worker so both reach the same cluster the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.service import TLSConfig

from clusterflow.settings import Settings
from clusterflow.tracing import temporal_interceptors


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path else None


def connect_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `Client.connect` (besides the address)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    tls: TLSConfig | bool = False
    if settings.temporal_tls or settings.temporal_tls_cert or settings.temporal_tls_ca or api_key:
        tls = TLSConfig(
            server_root_ca_cert=_read(settings.temporal_tls_ca),
            domain=settings.temporal_tls_server_name,
            client_cert=_read(settings.temporal_tls_cert),
            client_private_key=_read(settings.temporal_tls_key),
        )
    return {
        "namespace": settings.temporal_namespace,
        "tls": tls,
        "api_key": api_key,
        "interceptors": temporal_interceptors(settings),
    }
