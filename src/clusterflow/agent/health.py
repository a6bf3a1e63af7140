"""The agent's probe endpoint: `GET /healthz` and `GET /readyz` on `CLUSTERFLOW_AGENT_HEALTH_PORT`.

- `/healthz` (liveness) answers 200 while the agent's event loop runs: a wedged process is
  restarted. It never depends on the control plane, or a control-plane outage would restart
  every agent in a loop.
- `/readyz` (readiness) answers 200 only while the agent holds a session with the control plane
  (welcomed, heartbeating), else 503, so `kubectl get pods` and `kubectl wait
  --for=condition=Ready` show whether the installation connected.

A few lines of asyncio instead of a web framework: the agent image carries only the kubernetes
client and websockets, and the probes are the only callers (the NetworkPolicy admits nothing
else; kubelet probes are not subject to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("clusterflow.agent.health")

DEFAULT_PORT = 8081
_REQUEST_LINE_TIMEOUT = 5.0


def _response(status: int, reason: str, body: str) -> bytes:
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


def answer(path: str, connected: bool) -> bytes:
    if path == "/healthz":
        return _response(200, "OK", "ok\n")
    if path == "/readyz":
        if connected:
            return _response(200, "OK", "connected to the control plane\n")
        return _response(503, "Service Unavailable", "not connected to the control plane\n")
    return _response(404, "Not Found", "not found\n")


async def serve(port: int, connected: Callable[[], bool], host: str = "0.0.0.0") -> asyncio.Server:  # noqa: S104
    """Start answering probes; the caller closes the returned server. The pod IP must be
    reachable by the kubelet, hence all interfaces; the port is not exposed by any Service."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), _REQUEST_LINE_TIMEOUT)
            parts = line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 and parts[0] == "GET" else ""
            writer.write(answer(path, connected()))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError) as err:
            log.debug("probe connection dropped: %s", type(err).__name__)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
