"""Run a fake cloud endpoint (an ASGI app) in-process on a free port, over HTTP or TLS.

Fakes run in a thread of the test process so tests can inspect and steer their state directly,
while production code reaches them only over the network through the endpoint settings, with
its real SDK.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from clusterflow.devstack.postgres import free_port


class ThreadedServer:
    def __init__(self, app: Any, *, certfile: Path | None = None, keyfile: Path | None = None) -> None:
        self.port = free_port()
        scheme = "https" if certfile else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"fake-{self.port}", daemon=True)

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        # Clients (SDK connection pools) may keep idle keep-alive connections open; a TLS
        # transport would wait for their close_notify on shutdown, so drop them outright.
        for connection in list(self._server.server_state.connections):
            loop, transport = getattr(connection, "loop", None), getattr(connection, "transport", None)
            if loop is not None and transport is not None:
                loop.call_soon_threadsafe(transport.abort)
        self._server.should_exit = True
        self._thread.join(timeout=10)
