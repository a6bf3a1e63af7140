"""The operator console: static files served by the API at `/console`.

The console is plain HTML, CSS and JavaScript modules shipped in the package (no build step,
no CDN) and talks to the public REST API and its SSE streams like any other client, with the
API key the operator typed (kept in sessionStorage, sent as a header, never in a URL). It is a
`Mount`, not API routes, so it stays out of the OpenAPI document and the authorization matrix:
the files are public, the data behind them is not.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"

# Only our own files may run or be fetched; no framing (clickjacking an Approve button).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """StaticFiles with the console's security headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def console_app() -> ConsoleFiles:
    return ConsoleFiles(directory=STATIC_DIR, html=True)
