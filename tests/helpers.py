"""Small helpers the tests share: documents, waiting for an operation to settle, reading a
workflow history the way someone searching it for secrets would."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from typing import Any

import httpx
from temporalio.client import WorkflowHistory

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "REJECTED"}


def deploy_document(name: str = "demo-1", **local: Any) -> dict[str, Any]:
    """The deploy example from API.md, with `provisioner.local` settings overridable."""
    doc: dict[str, Any] = {
        "apiVersion": "clusterflow.dev/v1",
        "kind": "K8sCluster",
        "spec": {
            "clusterName": name,
            "provider": "local",
            "region": "local-1",
            "provisioner": {"type": "local", "local": {"kubernetesVersion": "1.31", **local}},
            "clusterSpec": {
                "controlPlane": {"nodeGroup": {"name": "cp", "machineTypes": ["small"], "minNode": 1, "maxNode": 1}},
                "dataPlane": {
                    "nodeGroups": [
                        {"name": "workers", "machineTypes": ["medium"], "minNode": 1, "maxNode": 3},
                        {
                            "name": "batch",
                            "machineTypes": ["large"],
                            "minNode": 0,
                            "maxNode": 5,
                            "instanceType": "spot",
                        },
                    ]
                },
            },
        },
    }
    return copy.deepcopy(doc)


async def wait_for_operation(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    operation_id: str,
    timeout: float = 60.0,
    until: set[str] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    wanted = until or TERMINAL
    while True:
        response = await client.get(f"/v1/operations/{operation_id}", headers=headers)
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()["data"]
        if record["status"] in wanted:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"operation {operation_id} still {record['status']} after {timeout}s: {record}")
        await asyncio.sleep(0.05)


async def all_events(client: httpx.AsyncClient, headers: dict[str, str], operation_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = 0
    while True:
        response = await client.get(
            f"/v1/operations/{operation_id}/events", params={"cursor": cursor, "limit": 100}, headers=headers
        )
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        events += page["events"]
        if not page["events"]:
            return events
        cursor = page["nextCursor"]


def history_text(history: WorkflowHistory) -> str:
    """The history's JSON with every payload decoded: JSON keeps payloads (inputs, results,
    heartbeat details) base64-encoded, so a plain text search of it would never find a secret."""
    raw = history.to_json()
    parts = [raw]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "metadata" in node:
                parts.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(raw))
    return "\n".join(parts)
