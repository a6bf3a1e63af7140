"""A client generated from `/openapi.json` (openapi-python-client, pinned in the dev extras)
drives the real app: a deploy, polls, an events page, an update that waits for approval and is
approved, a cancel. Every answer is parsed into the generated models, so a response the document
does not describe fails here.

The generated models are then walked: an attribute the document leaves untyped (`Any`, or a
model that is only a free-form map of `Any`) fails the test, unless it is in `FREE_FORM` with its
reason. This is what keeps the document exact as the API grows.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import os
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import Org
from tests.helpers import deploy_document

pytestmark = pytest.mark.usefixtures("worker")

PACKAGE = "cf_generated_client"

FREE_FORM: dict[str, str] = {
    "ErrorBody.details": "depends on the error code: field errors for 422, the conflicting resource for 409",
    "DeleteClusterV1ClustersClusterIdDeleteBodyType0": "delete's `credentials` body, accepted and ignored",
}
"""Attributes (Class.attribute) or whole models (Class) that are free-form on purpose.

Maps with typed values (labels, tags, query parameters: `dict[str, str]`) are typed and need
no entry."""


def _generate(document: dict[str, Any], root: Path) -> Path:
    spec = root / "openapi.json"
    spec.write_text(json.dumps(document))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            *("--path", str(spec), "--output-path", str(root / PACKAGE), "--meta", "none"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Warnings mean parts of the document were skipped (an endpoint or schema it cannot read).
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    return root / PACKAGE


async def _openapi(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _load(root: Path) -> ModuleType:
    sys.path.insert(0, str(root.parent))
    try:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root.parent))


def _endpoint(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def untyped_attributes(models_dir: Path) -> list[str]:
    """`Class.attribute` for every class-level attribute annotated with `Any`, and `Class` for
    every model that is only a free-form map of `Any` (an object schema without properties)."""
    found: list[str] = []
    for path in sorted(models_dir.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            attributes = {
                item.target.id: ast.unparse(item.annotation)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
            if not attributes:
                continue  # an enum
            extra = attributes.pop("additional_properties", None)
            if not attributes and extra is not None and "Any" in extra:
                found.append(node.name)
            found += [f"{node.name}.{name}" for name, annotation in attributes.items() if "Any" in annotation]
    return found


async def _poll(client: Any, operation_id: str, until: set[str], timeout: float = 60) -> Any:
    get_operation = _endpoint("operations.get_operation_v_1_operations_operation_id_get")
    deadline = time.monotonic() + timeout
    while True:
        response = await get_operation.asyncio_detailed(operation_id, client=client)
        assert response.status_code == 200, response.content
        record = response.parsed.data
        if record.status.value in until:
            return record
        assert time.monotonic() < deadline, f"{operation_id} still {record.status} after {timeout}s"
        await asyncio.sleep(0.05)


async def test_a_generated_client_deploys_polls_updates_approves_and_cancels(
    api: httpx.AsyncClient, org: Org, tmp_path: Path
) -> None:
    started = time.monotonic()
    root = _generate(await _openapi(api), tmp_path)
    package = _load(root)
    models = importlib.import_module(f"{PACKAGE}.models")

    untyped = untyped_attributes(root / "models")
    unexpected = sorted(set(untyped) - set(FREE_FORM))
    assert not unexpected, f"the generated client falls back to untyped data for: {unexpected}"
    assert set(untyped) == set(FREE_FORM), f"FREE_FORM lists what is typed now: {set(FREE_FORM) - set(untyped)}"

    api.headers["Authorization"] = f"Bearer {org.owner_key}"
    client = package.AuthenticatedClient(base_url=str(api.base_url), token=org.owner_key)
    client.set_async_httpx_client(api)

    # Deploy on the local provider, poll until it succeeded.
    deploy = _endpoint("clusters.deploy_cluster_v1_clusters_post")
    accepted = await deploy.asyncio_detailed(
        client=client, body=models.K8SCluster.from_dict(deploy_document("generated-1"))
    )
    assert accepted.status_code == 202, accepted.content
    operation_id = accepted.parsed.data.operation_id
    cluster_id = accepted.parsed.data.cluster_id
    record = await _poll(client, operation_id, {"SUCCEEDED", "FAILED"})
    assert record.status == models.OperationStatus.SUCCEEDED
    assert record.operation_type == models.OperationType.CLUSTER_DEPLOY
    assert isinstance(record.result, models.OperationResult)
    assert isinstance(record.result.cluster, models.ClusterOutputs)
    assert record.result.cluster.kubernetes_version == "1.31"

    # An events page, typed down to each event's kind and level.
    events = _endpoint("operations.operation_events_v_1_operations_operation_id_events_get")
    page = await events.asyncio_detailed(operation_id, client=client, limit=5)
    assert page.status_code == 200, page.content
    assert len(page.parsed.data.events) == 5 and page.parsed.data.next_cursor == 5
    assert all(isinstance(e.kind, Enum) and isinstance(e.level, Enum) for e in page.parsed.data.events)
    assert page.parsed.data.status == models.OperationStatus.SUCCEEDED

    # The cluster, with typed node groups.
    get_cluster = _endpoint("clusters.get_cluster_v_1_clusters_cluster_id_get")
    cluster = (await get_cluster.asyncio_detailed(cluster_id, client=client)).parsed.data
    assert cluster.state == models.ClusterState.ACTIVE
    assert [g.name for g in cluster.worker_nodes] == ["workers", "batch"]
    assert isinstance(cluster.worker_nodes[0], models.NodeGroupView)
    spec = _endpoint("clusters.get_cluster_spec_v_1_clusters_cluster_id_spec_get")
    document = (await spec.asyncio_detailed(cluster_id, client=client)).parsed.data
    assert isinstance(document, models.DeployedClusterDocument)
    assert document.spec.cluster_name == "generated-1"

    # An update that waits for an owner's approval, approved.
    put_policy = _endpoint("operations.put_policy_v_1_organizations_org_id_approval_policy_put")
    policy = await put_policy.asyncio_detailed(org.id, client=client, body=models.ApprovalPolicy(cluster_update=True))
    assert policy.status_code == 200, policy.content
    update = _endpoint("clusters.update_cluster_v_1_clusters_cluster_id_patch")
    change = models.K8SClusterUpdate.from_dict(
        {"apiVersion": "clusterflow.dev/v1", "kind": "K8sClusterUpdate", "spec": {"tags": {"team": "client"}}}
    )
    preview = await update.asyncio_detailed(
        cluster_id,
        client=client,
        body=models.K8SClusterUpdate.from_dict(
            {**change.to_dict(), "spec": {"tags": {"team": "client"}, "updateConfig": {"generateReport": True}}}
        ),
    )
    assert preview.status_code == 200, preview.content
    assert isinstance(preview.parsed.data.upgrade_plan, models.UpgradePlan)
    assert isinstance(preview.parsed.data.upgrade_report, models.UpgradeReport)
    accepted = await update.asyncio_detailed(cluster_id, client=client, body=change)
    assert accepted.status_code == 202, accepted.content
    assert accepted.parsed.data.approval_required is True
    update_id = accepted.parsed.data.operation_id
    waiting = await _poll(client, update_id, {"AWAITING_APPROVAL"})
    assert waiting.is_approvable is True
    decide = _endpoint("operations.decide_operation_v_1_operations_operation_id_approval_post")
    decision = await decide.asyncio_detailed(
        update_id,
        client=client,
        body=models.ApprovalDecision(
            action=models.ApprovalDecisionAction.APPROVE, token=accepted.parsed.data.approval_token
        ),
    )
    assert decision.status_code == 200, decision.content
    done = await _poll(client, update_id, {"SUCCEEDED", "FAILED"})
    assert done.status == models.OperationStatus.SUCCEEDED
    assert done.approval.decision.value == "APPROVE"

    # A cancel of a slow deploy: its cleanup inventory is typed.
    slow = await deploy.asyncio_detailed(
        client=client, body=models.K8SCluster.from_dict(deploy_document("generated-2", phaseSeconds=30))
    )
    assert slow.status_code == 202, slow.content
    await _poll(client, slow.parsed.data.operation_id, {"RUNNING"})
    cancel = _endpoint("operations.cancel_operation_v_1_operations_operation_id_cancel_post")
    cancelled = await cancel.asyncio_detailed(slow.parsed.data.operation_id, client=client)
    assert cancelled.status_code in (200, 202), cancelled.content
    ended = await _poll(client, slow.parsed.data.operation_id, {"CANCELLED", "FAILED", "SUCCEEDED"})
    assert ended.status == models.OperationStatus.CANCELLED
    assert isinstance(ended.metadata, models.OperationMetadata)
    assert isinstance(ended.metadata.cleaned_up, list) and ended.metadata.left_behind == []

    assert time.monotonic() - started < 120


async def test_the_streams_are_described_for_tools(api: httpx.AsyncClient) -> None:
    """The SSE answers carry their frame schema; the WebSocket protocol is an AsyncAPI document."""
    document = await _openapi(api)
    assert document["x-asyncapi"] == "/asyncapi.json"
    for path in ("/v1/operations/{operationId}/events", "/v1/clusters/{clusterId}/progress/stream"):
        stream = document["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]
        assert stream["schema"]["x-itemSchema"] == {"$ref": "#/components/schemas/SseEventFrame"}
    assert "SseEventFrame" in document["components"]["schemas"]
    asyncapi = (await api.get("/asyncapi.json")).json()
    assert asyncapi["asyncapi"] == "3.0.0"
    channel = asyncapi["channels"]["progress"]
    assert channel["address"] == "/v1/clusters/{clusterId}/progress/stream"
    assert set(channel["messages"]) == {"auth", "event", "keepalive", "end", "error"}
    schemas = asyncapi["components"]["schemas"]
    assert {"WsEvent", "OperationEvent", "WsError"} <= set(schemas)
    # The agent's channel: every message type the agent and the server exchange is described.
    from clusterflow.agent import protocol

    agent = asyncapi["channels"]["agent"]
    assert agent["address"] == protocol.PATH
    kinds = {
        value for name, value in vars(protocol).items() if name.isupper() and isinstance(value, str) and name != "PATH"
    }
    assert set(agent["messages"]) == kinds
    for name in kinds:
        payload = asyncapi["components"]["messages"][f"agent.{name}"]["payload"]
        assert payload["properties"]["type"] == {"const": name}
