"""The live streams, described for tools: an AsyncAPI 3.0 document at `/asyncapi.json`, and in
`/openapi.json` the SSE frame schema plus an `x-asyncapi` pointer on the stream paths.

Why AsyncAPI: OpenAPI has no way to say "this GET upgrades to a WebSocket and then these
messages flow"; `x-websocket`-style extensions are read by no mainstream tool, while AsyncAPI is
what WebSocket tooling reads (AsyncAPI Studio renders it, the AsyncAPI generator and Microcks
build clients and mocks from it). Its payloads are the same pydantic models the server sends,
so the two documents cannot drift. The SSE form stays in the OpenAPI document as a
`text/event-stream` answer of the same routes (OpenAPI 3.1 has no item schema for streams; the
frame's schema is given under `x-itemSchema`, the name OpenAPI 3.2 gives it as `itemSchema`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from clusterflow import __version__
from clusterflow.agent import protocol as agent_protocol
from clusterflow.api.schemas.operations import EventKind, OperationEvent

ASYNCAPI_PATH = "/asyncapi.json"
STREAM_PATHS = ("/v1/operations/{operationId}/events", "/v1/clusters/{clusterId}/progress/stream")


class SseEventFrame(BaseModel):
    """One SSE event, as the `id:`, `event:` and `data:` lines carry it. The stream starts with a
    `retry:` line and sends `: keep-alive` comments while idle."""

    id: int = Field(description="The event's sequence: send it back as Last-Event-ID to resume")
    event: EventKind
    data: OperationEvent = Field(description="JSON on the data: line")


class WsAuth(BaseModel):
    """Client to server, first message, only when the upgrade request had no API key header."""

    type: Literal["auth"]
    apiKey: str


class WsEvent(BaseModel):
    type: Literal["event"]
    id: int = Field(description="The event's sequence: send it as Last-Event-ID when reconnecting")
    event: EventKind
    data: OperationEvent


class WsKeepalive(BaseModel):
    type: Literal["keepalive"]


class WsEnd(BaseModel):
    """Sent before a normal close (1000), after the terminal status event."""

    type: Literal["end"]
    operationId: str


class WsErrorCode(BaseModel):
    code: str


class WsError(BaseModel):
    """Sent before closing with 4000 + status (4401, 4404, 4422)."""

    type: Literal["error"]
    status: int
    error: WsErrorCode
    message: str


_MESSAGES: dict[str, tuple[type[BaseModel], str]] = {
    "auth": (WsAuth, "API key, for clients that cannot set headers (browsers); within 10 s"),
    "event": (WsEvent, "One operation event"),
    "keepalive": (WsKeepalive, "While the operation is quiet"),
    "end": (WsEnd, "The stream ended; the server closes with 1000"),
    "error": (WsError, "A failure after the upgrade; the server closes with 4000 + status"),
}


def component_schemas() -> dict[str, Any]:
    """JSON schemas of every stream message, with `$ref`s into `#/components/schemas`."""
    models: list[type[BaseModel]] = [SseEventFrame, *(model for model, _ in _MESSAGES.values())]
    _, defs = models_json_schema([(m, "serialization") for m in models], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = defs.get("$defs", {})
    return schemas


def _message(kind: str, summary: str, **properties: Any) -> dict[str, Any]:
    required = ["type", *[k for k, v in properties.items() if v.pop("required", False)]]
    return {
        "name": kind,
        "summary": summary,
        "payload": {
            "type": "object",
            "required": required,
            "properties": {"type": {"const": kind}, **properties},
        },
    }


_REPORT: dict[str, Any] = {
    "type": "object",
    "description": "What the agent read from its cluster",
    "properties": {
        "kubernetesVersion": {"type": "string"},
        "nodeCount": {"type": "integer", "minimum": 0},
        "namespaceCount": {"type": "integer", "minimum": 0},
        "architecture": {"type": ["string", "null"]},
        "region": {"type": ["string", "null"]},
        "agentVersion": {"type": "string"},
    },
}


def _agent_messages() -> tuple[dict[str, Any], list[str], list[str]]:
    """The agent channel's messages (`clusterflow.agent.protocol`): (all, server's, agent's)."""
    text: dict[str, Any] = {"type": "string"}
    server = {
        agent_protocol.CREDENTIAL: _message(
            agent_protocol.CREDENTIAL,
            "The long-lived credential that replaces the one-time registration token; store it",
            credential=dict(text, required=True),
        ),
        agent_protocol.WELCOME: _message(
            agent_protocol.WELCOME,
            "Authenticated: the cluster and the heartbeat interval",
            clusterId=dict(text, required=True),
            clusterName=dict(text, required=True),
            heartbeatSeconds={"type": "number", "required": True},
        ),
        agent_protocol.ROTATE: _message(
            agent_protocol.ROTATE,
            "A new credential; answer `rotated` once it is stored",
            credential=dict(text, required=True),
        ),
        agent_protocol.KUBECONFIG: _message(
            agent_protocol.KUBECONFIG,
            "Issue a service-account token; answer `kubeconfig_result`",
            requestId=dict(text, required=True),
            expirationSeconds={"type": "integer", "minimum": 1},
        ),
        agent_protocol.UNINSTALL: _message(agent_protocol.UNINSTALL, "Remove yourself; answer `uninstalled`"),
        agent_protocol.ERROR: _message(
            agent_protocol.ERROR,
            "A refusal; the socket closes next (4401 unauthorized, 4410 revoked: do not retry; 4400 protocol)",
            code=dict(text),
            message=dict(text),
        ),
    }
    agent = {
        agent_protocol.REPORT: _message(agent_protocol.REPORT, "The first report, right after `welcome`"),
        agent_protocol.HEARTBEAT: _message(
            agent_protocol.HEARTBEAT, "Sent every heartbeatSeconds; carries a fresh report now and then", report=_REPORT
        ),
        agent_protocol.ROTATED: _message(agent_protocol.ROTATED, "The rotated credential is stored"),
        agent_protocol.KUBECONFIG_RESULT: _message(
            agent_protocol.KUBECONFIG_RESULT,
            "The issued token (or the error)",
            requestId=dict(text, required=True),
            token=dict(text),
            server=dict(text),
            certificateAuthorityData=dict(text),
            expiresAt={"type": "string", "format": "date-time"},
            error=dict(text),
        ),
        agent_protocol.UNINSTALLED: _message(agent_protocol.UNINSTALLED, "The agent removed itself"),
    }
    report = agent[agent_protocol.REPORT]["payload"]["properties"]
    report.update(_REPORT["properties"])
    return {**server, **agent}, list(server), list(agent)


def _agent_channel(document: dict[str, Any]) -> None:
    """Adds the in-cluster agent's outbound channel (`/v1/agent/connect`) to `document`."""
    messages, from_server, from_agent = _agent_messages()
    document["channels"]["agent"] = {
        "address": agent_protocol.PATH,
        "description": "The agent's outbound WebSocket: one JSON object per text frame, each with a `type`.",
        "bindings": {
            "ws": {
                "method": "GET",
                "headers": {
                    "type": "object",
                    "properties": {
                        "Authorization": {
                            "type": "string",
                            "description": "Bearer <one-time registration token>, then Bearer <credential>",
                        }
                    },
                },
            }
        },
        "messages": {name: {"$ref": f"#/components/messages/agent.{name}"} for name in messages},
    }
    document["operations"]["instructAgent"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/agent"},
        "summary": "What the control plane sends the agent",
        "messages": [{"$ref": f"#/channels/agent/messages/{name}"} for name in from_server],
    }
    document["operations"]["hearFromAgent"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/agent"},
        "summary": "What the agent sends the control plane",
        "messages": [{"$ref": f"#/channels/agent/messages/{name}"} for name in from_agent],
    }
    document["components"]["messages"].update({f"agent.{name}": body for name, body in messages.items()})


def asyncapi_document() -> dict[str, Any]:
    document = _progress_document()
    _agent_channel(document)
    return document


def _progress_document() -> dict[str, Any]:
    """The WebSocket protocol of `/v1/clusters/{clusterId}/progress/stream` as AsyncAPI 3.0
    (the agent channel is added by `asyncapi_document`)."""
    sent = [name for name in _MESSAGES if name != "auth"]
    messages = {
        name: {"name": name, "summary": summary, "payload": {"$ref": f"#/components/schemas/{model.__name__}"}}
        for name, (model, summary) in _MESSAGES.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "clusterflow streams",
            "version": __version__,
            "description": "Live operation progress over WebSocket. Authenticate with "
            "`Authorization: Bearer <key>` or `X-API-Key` on the upgrade request, or a first `auth` "
            "message. Resume with a `Last-Event-ID` header: no gap, no duplicate. Close 1012: the "
            "server restarts, reconnect. The same events are served as SSE: see /openapi.json. The "
            "`agent` channel is the in-cluster agent's outbound connection (registered clusters).",
        },
        "servers": {
            "api": {"host": "localhost:8000", "protocol": "ws", "description": "The API's own host (wss behind TLS)"}
        },
        "channels": {
            "progress": {
                "address": "/v1/clusters/{clusterId}/progress/stream",
                "parameters": {"clusterId": {"description": "The cluster"}},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "operationId": {"type": "string", "maxLength": 64},
                                "cursor": {"type": "integer", "minimum": 0},
                                "follow": {"type": "boolean", "default": True},
                                "untilTerminal": {"type": "boolean", "default": True},
                            },
                        },
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Authorization": {"type": "string"},
                                "X-API-Key": {"type": "string"},
                                "Last-Event-ID": {"type": "string"},
                            },
                        },
                    }
                },
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in _MESSAGES},
            }
        },
        "operations": {
            "receiveProgress": {
                "action": "receive",
                "channel": {"$ref": "#/channels/progress"},
                "summary": "What the server sends",
                "messages": [{"$ref": f"#/channels/progress/messages/{name}"} for name in sent],
            },
            "authenticate": {
                "action": "send",
                "channel": {"$ref": "#/channels/progress"},
                "summary": "What a client may send: only `auth`, first",
                "messages": [{"$ref": "#/channels/progress/messages/auth"}],
            },
        },
        "components": {"messages": messages, "schemas": component_schemas()},
    }


def document_streams(schema: dict[str, Any]) -> None:
    """Adds the SSE frame's schema to the stream routes' `text/event-stream` answers, and points
    them (and the document) at the AsyncAPI document for the WebSocket."""
    schema.setdefault("components", {}).setdefault("schemas", {}).update(component_schemas())
    schema["x-asyncapi"] = ASYNCAPI_PATH
    for path in STREAM_PATHS:
        operation = schema.get("paths", {}).get(path, {}).get("get")
        if operation is None:
            continue
        content = operation["responses"].get("200", {}).get("content", {})
        stream = content.get("text/event-stream")
        if stream is not None:
            stream["schema"] = {
                "type": "string",
                "description": "SSE frames; each event's fields follow x-itemSchema",
                "x-itemSchema": {"$ref": "#/components/schemas/SseEventFrame"},
            }
        if path.endswith("/progress/stream"):
            operation["x-asyncapi"] = f"{ASYNCAPI_PATH}#/channels/progress"
