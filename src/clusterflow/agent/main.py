"""`clusterflow-agent`: runs in a registered cluster and keeps one outbound WebSocket home.

Configuration (the manifest sets all of it):

- `CLUSTERFLOW_URL`: the control plane's URL (http(s); the socket is ws(s) on the same host).
- `CLUSTERFLOW_REGISTRATION_TOKEN_FILE` (the manifest mounts the registration Secret there) or
  `CLUSTERFLOW_REGISTRATION_TOKEN`: the one-time token, spent on the first connection.
- `CLUSTERFLOW_AGENT_NAMESPACE`: where the agent keeps its credential Secret.
- the in-cluster service account, or `KUBECONFIG` outside a pod.
- `CLUSTERFLOW_AGENT_BACKOFF_MAX_SECONDS` (default 30): longest pause between redials.
- `CLUSTERFLOW_AGENT_REPORT_SECONDS` (default 60): how often heartbeats carry a fresh report.
- `CLUSTERFLOW_AGENT_HEALTH_PORT` (default 8081, 0: off): the probes' `/healthz` and `/readyz`
  (`agent/health.py`; ready while connected to the control plane).

The long-lived credential it receives for the token is kept in a Secret (and in memory), so a
restarted pod reconnects without a new token. A refused token or credential, a revocation or an
uninstall ends the process (exit 3, 0 and 0); any other failure (network, control plane
restarting, kube API errors) is retried with exponential backoff and jitter. Secrets are never
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from clusterflow import __version__
from clusterflow.agent import health, protocol
from clusterflow.agent.kube import Cluster

log = logging.getLogger("clusterflow.agent")

EXIT_DONE = 0
EXIT_REFUSED = 3


class SessionEnded(Exception):
    """The server ended the agent's life: refused, revoked, or uninstalled."""

    def __init__(self, exit_code: int, reason: str) -> None:
        super().__init__(reason)
        self.exit_code = exit_code
        self.reason = reason


@dataclass
class AgentConfig:
    url: str
    registration_token: str | None
    namespace: str | None
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    report_seconds: float = 60.0
    health_port: int = health.DEFAULT_PORT

    @classmethod
    def from_env(cls) -> AgentConfig:
        url = os.environ.get("CLUSTERFLOW_URL")
        if not url:
            raise SystemExit("CLUSTERFLOW_URL is not set")
        return cls(
            url=url,
            registration_token=_registration_token(),
            namespace=os.environ.get("CLUSTERFLOW_AGENT_NAMESPACE") or None,
            backoff_max_seconds=float(os.environ.get("CLUSTERFLOW_AGENT_BACKOFF_MAX_SECONDS", "30")),
            report_seconds=float(os.environ.get("CLUSTERFLOW_AGENT_REPORT_SECONDS", "60")),
            health_port=int(os.environ.get("CLUSTERFLOW_AGENT_HEALTH_PORT", str(health.DEFAULT_PORT))),
        )

    @property
    def socket_url(self) -> str:
        base = self.url.rstrip("/")
        if base.startswith("https://"):
            base = "wss://" + base.removeprefix("https://")
        elif base.startswith("http://"):
            base = "ws://" + base.removeprefix("http://")
        return base + protocol.PATH


def _registration_token() -> str | None:
    """From the mounted Secret file (the manifest's way: a file is not in the pod's environment,
    which `kubectl describe` and crash dumps show), else the variable (agents installed earlier).
    The Secret is optional in the pod, so after registration a missing file is no error."""
    path = os.environ.get("CLUSTERFLOW_REGISTRATION_TOKEN_FILE")
    if path:
        try:
            token = Path(path).read_text().strip()
        except FileNotFoundError:
            token = ""
        if token:
            return token
    return os.environ.get("CLUSTERFLOW_REGISTRATION_TOKEN") or None


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.current = initial

    def reset(self) -> None:
        self.current = self.initial

    def next_delay(self) -> float:
        delay = self.current * random.uniform(0.5, 1.0)
        self.current = min(self.current * 2, self.maximum)
        return delay


class Agent:
    def __init__(self, cfg: AgentConfig, cluster: Cluster) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.credential: str | None = None
        self.connected = False
        """True while a session with the control plane is up (welcomed): the readiness probe."""

    async def _kube(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def run(self) -> int:
        backoff = Backoff(self.cfg.backoff_initial_seconds, self.cfg.backoff_max_seconds)
        while True:
            try:
                if self.credential is None:
                    self.credential = await self._kube(self.cluster.load_credential)
                secret = self.credential or self.cfg.registration_token
                if not secret:
                    log.error("no agent credential in the cluster and no CLUSTERFLOW_REGISTRATION_TOKEN")
                    return EXIT_REFUSED
                async with websockets.connect(
                    self.cfg.socket_url,
                    additional_headers={"Authorization": f"Bearer {secret}"},
                    open_timeout=10,
                    max_size=2**20,
                ) as ws:
                    await self._session(ws, backoff)
            except SessionEnded as ended:
                log.log(logging.ERROR if ended.exit_code else logging.INFO, "agent stopping: %s", ended.reason)
                return ended.exit_code
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                reason = closed.rcvd.reason if closed.rcvd else ""
                if code == protocol.CLOSE_UNAUTHORIZED:
                    log.error("agent stopping: the control plane refused it (%s)", reason)
                    return EXIT_REFUSED
                if code == protocol.CLOSE_REVOKED:
                    log.info("agent stopping: it was unregistered (%s)", reason)
                    return EXIT_DONE
                log.warning("connection to the control plane lost (%s %s); redialling", code, reason)
            except InvalidStatus as err:
                log.warning("control plane answered %s to the upgrade; redialling", err.response.status_code)
            except (OSError, InvalidHandshake, TimeoutError) as err:
                log.warning("cannot reach the control plane (%s); redialling", type(err).__name__)
            except Exception as err:  # kube API errors and the like: retry, never die silently
                log.warning("agent session failed (%s: %s); redialling", type(err).__name__, err)
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, ws: ClientConnection, backoff: Backoff) -> None:
        first = await self._receive(ws)
        if first.get("type") == protocol.CREDENTIAL:
            credential = str(first["credential"])
            # In memory first: if storing fails, this process still holds the only copy.
            self.credential = credential
            await self._kube(self.cluster.store_credential, credential)
            log.info("registration token exchanged for an agent credential")
            first = await self._receive(ws)
        if first.get("type") == protocol.ERROR:
            raise SessionEnded(EXIT_REFUSED, f"refused by the control plane: {first.get('code')}")
        if first.get("type") != protocol.WELCOME:
            raise SessionEnded(EXIT_REFUSED, f"unexpected first message {first.get('type')!r}")
        heartbeat_seconds = float(first.get("heartbeatSeconds") or 15)
        log.info("connected to the control plane as cluster %s", first.get("clusterName"))
        await self._send(ws, {"type": protocol.REPORT, **await self._report()})
        backoff.reset()
        self.connected = True
        heartbeats = asyncio.create_task(self._heartbeat(ws, heartbeat_seconds))
        try:
            while True:
                message = await self._receive(ws)
                await self._handle(ws, message)
        finally:
            self.connected = False
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeats

    async def _report(self) -> dict[str, Any]:
        report: dict[str, Any] = await self._kube(self.cluster.report)
        return report | {"agentVersion": __version__}

    async def _heartbeat(self, ws: ClientConnection, seconds: float) -> None:
        """Heartbeat every `seconds`; re-read the cluster (a node list is not free on a large
        cluster) only every `report_seconds`."""
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self.cfg.report_seconds
        while True:
            await asyncio.sleep(seconds)
            report: dict[str, Any] = {}
            if loop.time() >= next_report:
                next_report = loop.time() + self.cfg.report_seconds
                try:
                    report = await self._report()
                except Exception as err:  # the heartbeat still proves the agent is alive
                    log.warning("cannot read the cluster (%s); heartbeating without a report", type(err).__name__)
            await self._send(ws, {"type": protocol.HEARTBEAT, "report": report})

    async def _handle(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == protocol.ROTATE:
            credential = str(message["credential"])
            await self._kube(self.cluster.store_credential, credential)
            self.credential = credential
            await self._send(ws, {"type": protocol.ROTATED})
            log.info("agent credential rotated")
        elif kind == protocol.KUBECONFIG:
            await self._issue_kubeconfig(ws, message)
        elif kind == protocol.UNINSTALL:
            log.info("unregistered: removing the agent from the cluster")
            await self._kube(self.cluster.uninstall)
            await self._send(ws, {"type": protocol.UNINSTALLED})
            raise SessionEnded(EXIT_DONE, "uninstalled")
        elif kind == protocol.ERROR:
            log.error("control plane error: %s", message.get("message"))

    async def _issue_kubeconfig(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        request_id = message.get("requestId")
        try:
            issued = await self._kube(self.cluster.issue_token, int(message.get("expirationSeconds") or 3600))
        except Exception as err:
            log.warning("could not issue a kubeconfig token (%s)", type(err).__name__)
            await self._send(ws, {"type": protocol.KUBECONFIG_RESULT, "requestId": request_id, "error": str(err)[:500]})
            return
        await self._send(
            ws,
            {
                "type": protocol.KUBECONFIG_RESULT,
                "requestId": request_id,
                "token": issued.token,
                "server": issued.server,
                "certificateAuthorityData": issued.certificate_authority_data,
                "expiresAt": issued.expires_at,
            },
        )
        log.info("issued a kubeconfig token for request %s", request_id)

    async def _receive(self, ws: ClientConnection) -> dict[str, Any]:
        raw = await ws.recv()
        message = json.loads(raw)
        if not isinstance(message, dict):
            raise ValueError("the control plane sent a message that is not an object")
        if message.get("type") == protocol.ERROR:
            log.error("control plane refused the agent: %s", message.get("message"))
        return message

    async def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        await ws.send(json.dumps(message))


async def _main() -> int:
    cfg = AgentConfig.from_env()
    cluster = await asyncio.to_thread(Cluster, cfg.namespace)
    agent = Agent(cfg, cluster)
    probes = None
    if cfg.health_port:
        try:
            probes = await health.serve(cfg.health_port, lambda: agent.connected)
        except OSError as err:  # keep the cluster connected; the failing liveness probe shows this
            log.error("probe endpoint not started on port %s: %s", cfg.health_port, err)
    task = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        log.info("agent stopped by signal")
        return EXIT_DONE
    finally:
        if probes is not None:
            probes.close()


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CLUSTERFLOW_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # urllib3 and websockets debug logs would print Authorization headers.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # The kubernetes client logs whole response bodies at DEBUG: Secrets and issued tokens.
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
