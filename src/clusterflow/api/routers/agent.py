"""The agents' side of the API: their WebSocket (`/v1/agent/connect`).

Agents dial out, so a registered cluster needs no inbound port. The socket is held by one API
process; work for the agent (rotate the credential, issue a kubeconfig, remove itself) is
written to PostgreSQL by workflows' activities and picked up here on a short poll, so any API
process can serve any agent and workers never need to reach it. State changes go to the
database before they are acknowledged, so a crash of this process loses nothing but the
socket, which the agent redials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect
from temporalio.client import Client

from clusterflow.agent import protocol
from clusterflow.contracts.agent import AGENT_CONNECTED_SIGNAL, AgentReport
from clusterflow.contracts.operations import ACTIVE_STATUSES
from clusterflow.records import clusters, operations, registrations, secrets_store
from clusterflow.records.db import DbPool
from clusterflow.settings import Settings
from clusterflow.vault import Sealer, VaultNotConfigured

log = logging.getLogger(__name__)

router = APIRouter(tags=["agent"])


def _bearer(value: str | None) -> str | None:
    if not value or not value.lower().startswith("bearer "):
        return None
    return value[7:].strip() or None


def _report(message: dict[str, Any]) -> dict[str, Any]:
    report = message.get("report") if message.get("type") == protocol.HEARTBEAT else message
    if not isinstance(report, dict):
        return {}
    info: dict[str, Any] = {}
    for key, kind in (
        ("kubernetesVersion", str),
        ("nodeCount", int),
        ("namespaceCount", int),
        ("architecture", str),
        ("region", str),
        ("agentVersion", str),
    ):
        value = report.get(key)
        if isinstance(value, kind) and not isinstance(value, bool):
            info[key] = value[:64] if isinstance(value, str) else value
    return info


class AgentSession:
    """One agent's socket: authenticate, record the connection, relay work both ways."""

    def __init__(self, websocket: WebSocket, pool: DbPool, settings: Settings, temporal: Client) -> None:
        self.ws = websocket
        self.pool = pool
        self.settings = settings
        self.temporal = temporal
        self.connection_id = uuid.uuid4().hex
        self.cluster_id = ""
        self.cluster_name = ""
        self.rotation_sent = False
        self.uninstall_sent = False
        self.kubeconfigs_sent: set[str] = set()

    async def refuse(self, code: str, message: str, close_code: int = protocol.CLOSE_UNAUTHORIZED) -> None:
        log.warning("agent connection refused: %s", code)
        with contextlib.suppress(Exception):
            await self.ws.send_json({"type": protocol.ERROR, "code": code, "message": message})
            await self.ws.close(close_code, code)

    async def authenticate(self, secret: str | None) -> bool:
        if secret and secret.startswith(registrations.REGISTRATION_TOKEN_PREFIX):
            credential = registrations.new_agent_credential()
            async with self.pool.acquire() as conn:
                exchange = await registrations.exchange_token(conn, secret, registrations.hash_secret(credential))
            if exchange.refusal is not None:
                await self.refuse(exchange.refusal, _refusal_message(exchange.refusal))
                return False
            assert exchange.cluster_id is not None
            self.cluster_id = exchange.cluster_id
            await self.ws.send_json({"type": protocol.CREDENTIAL, "credential": credential})
            return True
        if secret and secret.startswith(registrations.AGENT_CREDENTIAL_PREFIX):
            async with self.pool.acquire() as conn:
                cluster_id = await registrations.authenticate_credential(conn, secret)
            if cluster_id is None:
                await self.refuse("AGENT_CREDENTIAL_INVALID", "the agent credential is unknown or revoked")
                return False
            self.cluster_id = cluster_id
            return True
        await self.refuse("UNAUTHORIZED", "a registration token or agent credential is required")
        return False

    async def run(self) -> None:
        await self.ws.accept()
        if not await self.authenticate(_bearer(self.ws.headers.get("authorization"))):
            return
        reg = await registrations.get(self.pool, self.cluster_id)
        assert reg is not None
        name = await clusters.name_of(self.pool, self.cluster_id)
        assert name is not None  # a registration references its cluster
        self.cluster_name = name
        await self.ws.send_json(
            {
                "type": protocol.WELCOME,
                "clusterId": self.cluster_id,
                "clusterName": self.cluster_name,
                "heartbeatSeconds": self.settings.agent_heartbeat_seconds,
            }
        )
        try:
            first = await asyncio.wait_for(self.ws.receive_json(), timeout=self.settings.agent_heartbeat_seconds + 30)
        except WebSocketDisconnect:
            return
        except (TimeoutError, ValueError):
            await self.refuse("PROTOCOL", "expected a report", protocol.CLOSE_PROTOCOL)
            return
        info = _report(first)
        async with self.pool.acquire() as conn:
            await registrations.mark_connected(conn, self.cluster_id, self.connection_id, info)
        log.info("agent of cluster %s connected", self.cluster_id)
        await self._signal_registration(reg.register_operation_id, reg.organization_id, info)
        try:
            await self._relay()
        except WebSocketDisconnect:
            pass
        finally:
            async with self.pool.acquire() as conn:
                await registrations.mark_disconnected(
                    conn, self.cluster_id, self.connection_id, "agent connection closed"
                )
            log.info("agent of cluster %s disconnected", self.cluster_id)

    async def _signal_registration(self, operation_id: str | None, organization_id: str, info: dict[str, Any]) -> None:
        if not operation_id:
            return
        op = await operations.get(self.pool, organization_id, operation_id)
        if op is None or op.status not in ACTIVE_STATUSES:
            return
        report = AgentReport(
            kubernetes_version=info.get("kubernetesVersion"),
            node_count=int(info.get("nodeCount") or 0),
            architecture=info.get("architecture"),
            region=info.get("region"),
            agent_version=info.get("agentVersion"),
        )
        try:
            await self.temporal.get_workflow_handle(operation_id).signal(AGENT_CONNECTED_SIGNAL, report)
        except Exception:
            # The registration workflow also reads the connection from the database before it
            # gives up, so a lost signal delays success at worst.
            log.exception("could not signal registration %s", operation_id)

    async def _relay(self) -> None:
        """Agent messages as they come; the database, for work to push, once per poll interval."""
        loop = asyncio.get_running_loop()
        poll = self.settings.agent_command_poll_seconds
        next_poll = loop.time()
        receiving = asyncio.ensure_future(self.ws.receive_text())
        try:
            while True:
                done, _ = await asyncio.wait({receiving}, timeout=max(next_poll - loop.time(), 0))
                if receiving in done:
                    raw = receiving.result()
                    receiving = asyncio.ensure_future(self.ws.receive_text())
                    try:
                        message = json.loads(raw)
                    except ValueError:
                        await self.refuse("PROTOCOL", "messages are JSON objects", protocol.CLOSE_PROTOCOL)
                        return
                    if isinstance(message, dict) and await self._handle(message):
                        return
                if loop.time() >= next_poll:
                    next_poll = loop.time() + poll
                    if await self._push_work():
                        return
        finally:
            receiving.cancel()

    async def _handle(self, message: dict[str, Any]) -> bool:
        """Handle one agent message; true when the session is over."""
        kind = message.get("type")
        if kind in (protocol.HEARTBEAT, protocol.REPORT):
            async with self.pool.acquire() as conn:
                # A heartbeat without a report keeps the last one.
                restored = await registrations.heartbeat(
                    conn, self.cluster_id, self.connection_id, _report(message) or None
                )
            if restored:
                log.info("agent of cluster %s is heartbeating again", self.cluster_id)
        elif kind == protocol.ROTATED:
            await registrations.promote_pending_credential(self.pool, self.cluster_id)
            self.rotation_sent = False
        elif kind == protocol.KUBECONFIG_RESULT:
            await self._store_kubeconfig(message)
        elif kind == protocol.UNINSTALLED:
            await registrations.mark_agent_removed(self.pool, self.cluster_id)
            with contextlib.suppress(Exception):
                await self.ws.close(1000, "uninstalled")
            return True
        return False

    async def _push_work(self) -> bool:
        """Forward pending work to the agent; true when the session must end."""
        reg = await registrations.get(self.pool, self.cluster_id)
        if reg is None or reg.revoked_at is not None:
            await self.refuse("AGENT_REVOKED", "this agent was unregistered", protocol.CLOSE_REVOKED)
            return True
        if reg.uninstall_requested_at is not None and not self.uninstall_sent:
            self.uninstall_sent = True
            await self.ws.send_json({"type": protocol.UNINSTALL})
        if reg.rotation_requested_at is not None and not self.rotation_sent:
            self.rotation_sent = True
            credential = registrations.new_agent_credential()
            await registrations.set_pending_credential(
                self.pool, self.cluster_id, registrations.hash_secret(credential)
            )
            await self.ws.send_json({"type": protocol.ROTATE, "credential": credential})
        for request in await secrets_store.pending_kubeconfigs(self.pool, self.cluster_id):
            if request.operation_id not in self.kubeconfigs_sent:
                self.kubeconfigs_sent.add(request.operation_id)
                await self.ws.send_json(
                    {
                        "type": protocol.KUBECONFIG,
                        "requestId": request.operation_id,
                        "expirationSeconds": request.duration_seconds,
                    }
                )
        return False

    async def _store_kubeconfig(self, message: dict[str, Any]) -> None:
        request_id = str(message.get("requestId") or "")
        if request_id not in self.kubeconfigs_sent:
            return
        if message.get("error") or not message.get("token"):
            await secrets_store.fail_kubeconfig(
                self.pool, request_id, f"the agent could not issue a token: {message.get('error')}"
            )
            return
        record = await secrets_store.kubeconfig(self.pool, request_id)
        if record is None:
            return
        expires_at = _parse_time(message.get("expiresAt")) or datetime.now(UTC) + timedelta(
            seconds=record.duration_seconds
        )
        cluster: dict[str, Any] = {"server": str(message.get("server") or "")}
        if message.get("certificateAuthorityData"):
            cluster["certificate-authority-data"] = str(message["certificateAuthorityData"])
        user = f"{self.cluster_name}-clusterflow"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.cluster_name, "cluster": cluster}],
            "users": [{"name": user, "user": {"token": str(message["token"])}}],
            "contexts": [{"name": self.cluster_name, "context": {"cluster": self.cluster_name, "user": user}}],
            "current-context": self.cluster_name,
        }
        try:
            sealed = Sealer.from_settings(self.settings).seal(yaml.safe_dump(config).encode(), request_id)
        except VaultNotConfigured as err:
            await secrets_store.fail_kubeconfig(self.pool, request_id, str(err))
            return
        await secrets_store.store_kubeconfig(
            self.pool,
            request_id,
            key_id=sealed.key_id,
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
            expires_at=expires_at,
        )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _refusal_message(refusal: registrations.TokenRefusal) -> str:
    return {
        registrations.TokenRefusal.INVALID: "unknown registration token",
        registrations.TokenRefusal.USED: "this registration token was already used; register the cluster again",
        registrations.TokenRefusal.EXPIRED: "this registration token expired; register the cluster again",
        registrations.TokenRefusal.REVOKED: "this registration was revoked; register the cluster again",
    }[refusal]


@router.websocket(protocol.PATH)
async def agent_connect(websocket: WebSocket) -> None:
    app = websocket.app
    session = AgentSession(websocket, app.state.pool, app.state.settings, app.state.temporal)
    await session.run()
