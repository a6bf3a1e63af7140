"""The federated token exchange tells a refusal (the customer removed the federation: connect
again, never retried) from an outage (retried), whatever shape the token endpoint's error has."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from clusterflow.activities import federation
from clusterflow.devstack.postgres import free_port
from clusterflow.settings import Settings
from tests.fakes.server import ThreadedServer

IDENTITY = {"tenantId": str(uuid.uuid4()), "clientId": str(uuid.uuid4())}


class TokenEndpoint:
    """Answers every POST with the next queued (status, body)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any]] = []
        self.server = ThreadedServer(Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])]))

    async def _handle(self, request: Request) -> Response:
        status, body = self.answers.pop(0)
        if isinstance(body, str):
            return PlainTextResponse(body, status_code=status)
        return JSONResponse(body, status_code=status)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[TokenEndpoint]:
    fake = TokenEndpoint()
    fake.server.start()
    yield fake
    fake.server.stop()


def settings_for(authority: str, state_dir: Path) -> Settings:
    return Settings(public_url="https://clusterflow.test", azure_authority_host=authority, state_dir=state_dir)


@pytest.mark.parametrize(
    ("status", "body", "retryable", "said"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "AADSTS700213: No matching federated identity"},
            False,
            "AADSTS700213",
        ),
        (401, {"error": "invalid_client"}, False, "invalid_client"),
        (
            403,
            {"error": {"code": 403, "message": "Permission denied on the service account"}},
            False,
            "Permission denied",
        ),
        (429, {"error": "temporarily_unavailable"}, True, "temporarily_unavailable"),
        (503, "<html>upstream connect error</html>", True, "upstream connect error"),
        (200, {"token_type": "Bearer"}, True, "without access_token"),
    ],
)
async def test_refusals_are_final_and_outages_are_retried(
    endpoint: TokenEndpoint, tmp_path: Path, status: int, body: Any, retryable: bool, said: str
) -> None:
    endpoint.answers.append((status, body))
    with pytest.raises(federation.ExchangeFailed) as failed:
        await federation.azure_access_token(settings_for(endpoint.server.url, tmp_path), "org_1", "acct_1", IDENTITY)
    assert failed.value.retryable is retryable
    assert said in str(failed.value)


async def test_an_unreachable_token_endpoint_is_retried(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(federation.ExchangeFailed) as failed:
        await federation.azure_access_token(settings_for(nobody, tmp_path), "org_1", "acct_1", IDENTITY)
    assert failed.value.retryable


async def test_an_issued_token_comes_with_its_expiry(endpoint: TokenEndpoint, tmp_path: Path) -> None:
    endpoint.answers.append((200, {"access_token": "arm-token", "expires_in": 3599, "token_type": "Bearer"}))
    issued = await federation.azure_access_token(
        settings_for(endpoint.server.url, tmp_path), "org_1", "acct_1", IDENTITY
    )
    assert issued.access_token == "arm-token"
    assert issued.expiration.endswith("Z")


@pytest.mark.parametrize(("requested", "granted"), [(0, 3600), (1, 600), (900, 900), (3600, 3600), (43200, 3600)])
def test_token_lifetimes_stay_within_what_clouds_grant(requested: int, granted: int) -> None:
    assert federation.lifetime_seconds(requested) == granted
