"""The real app served by uvicorn on a free port inside the test's event loop, and an SSE reader.

Streams need a real server: httpx's ASGI transport buffers a response until the app finishes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from clusterflow.api.app import create_app
from clusterflow.devstack.postgres import free_port
from clusterflow.settings import Settings


@dataclass
class LiveApi:
    app: FastAPI
    url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)


@asynccontextmanager
async def live_api(settings: Settings) -> AsyncIterator[LiveApi]:
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield LiveApi(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task


@dataclass
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent | str]:
    """Parse a text/event-stream: events, and `retry:` / comment lines as strings."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield SseEvent(int(fields["id"]), fields["event"], json.loads(fields["data"]))
            fields = {}
        elif line.startswith(":") or line.startswith("retry:"):
            yield line
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def sse_headers(headers: dict[str, str], last_event_id: int | None = None) -> dict[str, str]:
    out = {**headers, "Accept": "text/event-stream"}
    if last_event_id is not None:
        out["Last-Event-ID"] = str(last_event_id)
    return out
