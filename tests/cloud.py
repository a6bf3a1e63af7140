"""Shared by the GKE and AKS tests: documents, operation rows for activity tests, and running
provider phases directly with Temporal's ActivityEnvironment (the real activity code)."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from temporalio.testing import ActivityEnvironment

from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult
from clusterflow.contracts.phases import DEPLOY_PHASES
from clusterflow.records import operations


def cloud_document(
    name: str, provider: str, region: str, provisioner: dict[str, Any], groups: list[dict[str, Any]]
) -> dict[str, Any]:
    return copy.deepcopy(
        {
            "apiVersion": "clusterflow.dev/v1",
            "kind": "K8sCluster",
            "spec": {
                "clusterName": name,
                "provider": provider,
                "region": region,
                "provisioner": provisioner,
                "clusterSpec": {"dataPlane": {"nodeGroups": groups}},
            },
        }
    )


async def operation_row(pool: asyncpg.Pool, org_id: str, operation_type: str = "CLUSTER_UPDATE") -> str:
    """A bare operation record for phase events to land in (no cluster lock)."""
    operation_id = f"op_test_{uuid.uuid4().hex[:16]}"
    async with pool.acquire() as conn:
        await operations.insert(
            conn,
            operation_id=operation_id,
            organization_id=org_id,
            cluster_id=None,
            cluster_name=None,
            operation_type=operation_type,
            requested_by=None,
            idempotency_key=None,
            workflow_type="test",
            workflow_input={},
        )
    return operation_id


PhaseFn = Callable[[PhaseInput], Awaitable[PhaseResult]]


async def run_phases(
    fn: PhaseFn,
    operation_id: str,
    cluster_id: str,
    spec: dict[str, Any],
    phases: tuple[str, ...] = DEPLOY_PHASES,
    attempt: int = 1,
) -> list[PhaseResult]:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    results = []
    for phase in phases:
        inp = PhaseInput(
            operation_id=operation_id,
            cluster_id=cluster_id,
            cluster_name=spec["clusterName"],
            provider=spec["provider"],
            region=spec["region"],
            phase=phase,
            spec=spec,
            progress_from=0,
            progress_to=100,
        )
        results.append(await env.run(fn, inp))
    return results
