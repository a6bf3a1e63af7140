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


def asyncapi_document() -> dict[str, Any]:
    """The WebSocket protocol of `/v1/clusters/{clusterId}/progress/stream` as AsyncAPI 3.0."""
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
            "server restarts, reconnect. The same events are served as SSE: see /openapi.json.",
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
