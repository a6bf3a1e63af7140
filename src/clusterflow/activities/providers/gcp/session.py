"""One phase's view of GKE (`GkeSession`): a cluster's names, and calls that classify errors and
wait.

- GKE runs every mutation as its own long-running `Operation`; a phase starts it and polls
  *that* operation until DONE (heartbeating between polls), then checks the resource. GKE allows
  one operation per cluster at a time: a mutation refused with FAILED_PRECONDITION because
  another is running waits for it inside the activity instead of failing.
- The SDK's own retries are disabled (`retry=None`): Temporal's retry policy is the one retry
  layer, so every retry is visible as an operation event.
- The client is synchronous (requests); calls run in a thread so the worker's event loop and
  heartbeats keep going.
- An operation GKE runs goes on when the phase that started it is cancelled or its worker dies.
  `settled_cluster` waits until no operation runs on the cluster before describing it, so an
  update's rollback (or a retried attempt) judges what is there once that operation ended, not
  a pool half-way through a change that would land after the rollback looked.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import container_v1

from clusterflow.activities.providers.gcp.errors import classify_google_error, classify_operation_error
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.contracts.operations import ErrorCode

T = TypeVar("T")

# How many polls a mutation waits for another operation on the same cluster before giving up
# this attempt (Temporal then retries it).
_BUSY_POLLS = 240


class GkeSession:
    """One phase's view of GKE: a cluster's names, and calls that classify errors and wait."""

    def __init__(
        self,
        client: container_v1.ClusterManagerClient,
        reporter: PhaseReporter,
        project: str,
        location: str,
        cluster: str,
        poll_seconds: float,
    ) -> None:
        self.client = client
        self.reporter = reporter
        self.project = project
        self.location = location
        self.cluster = cluster
        self.poll_seconds = poll_seconds

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def name(self) -> str:
        return f"{self.parent}/clusters/{self.cluster}"

    def pool_name(self, pool: str) -> str:
        return f"{self.name}/nodePools/{pool}"

    async def call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(functools.partial(fn, retry=None, **kwargs))
        except gexc.GoogleAPICallError as err:
            raise classify_google_error(err, what) from err

    async def get_cluster(self) -> container_v1.Cluster | None:
        try:
            return await self.call(f"describe cluster {self.cluster}", self.client.get_cluster, name=self.name)
        except ProviderError as err:
            if err.code == ErrorCode.CLOUD_NOT_FOUND:
                return None
            raise

    async def mutate(self, what: str, fn: Callable[..., container_v1.Operation], **kwargs: Any) -> None:
        """Start a GKE operation (waiting out another one on the cluster) and wait until DONE."""
        for _ in range(_BUSY_POLLS):
            try:
                operation = await self.call(what, fn, **kwargs)
                break
            except ProviderError as err:
                if err.code != ErrorCode.CLOUD_BUSY:
                    raise
                await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: waiting for another GKE operation")
        else:
            raise ProviderError(ErrorCode.CLOUD_BUSY, f"{what}: cluster stayed busy", retryable=True)
        await self.wait_operation(operation, what)

    async def wait_operation(self, operation: container_v1.Operation, what: str) -> None:
        name = f"{self.parent}/operations/{operation.name}"
        last_status = None
        while True:
            status = container_v1.Operation.Status(operation.status).name
            if status != last_status:
                await self.reporter.event(
                    f"gke-op/{operation.name}/{status}", f"{what}: GKE operation {operation.name} is {status}"
                )
                last_status = status
            if status == "DONE":
                if operation.error.message or operation.status_message:
                    message = operation.error.message or operation.status_message
                    raise classify_operation_error(operation.error.code, message, what)
                return
            await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: {status}")
            operation = await self.call(f"poll {what}", self.client.get_operation, name=name)

    async def running_operations(self) -> list[container_v1.Operation]:
        """Operations on this cluster (or its node pools) that have not ended."""
        listed = await self.call(f"list operations of {self.cluster}", self.client.list_operations, parent=self.parent)
        mine = f"/{self.name}"
        return [
            op
            for op in listed.operations
            if container_v1.Operation.Status(op.status).name != "DONE"
            and (op.target_link.endswith(mine) or f"{mine}/" in op.target_link)
        ]

    async def settled_cluster(self, what: str) -> container_v1.Cluster | None:
        """The cluster once no operation runs on it (None if it does not exist)."""
        for _ in range(_BUSY_POLLS):
            running = await self.running_operations()
            if not running:
                return await self.get_cluster()
            names = ", ".join(f"{op.name} ({container_v1.Operation.Type(op.operation_type).name})" for op in running)
            await self.reporter.event(
                f"settle/{running[0].name}", f"{what}: waiting for GKE operation {names} to end first"
            )
            await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: waiting for {names}")
        raise ProviderError(ErrorCode.CLOUD_BUSY, f"{what}: cluster stayed busy", retryable=True)

    async def wait_cluster(self, what: str, ready: Callable[[container_v1.Cluster], bool]) -> container_v1.Cluster:
        while True:
            cluster = await self.get_cluster()
            if cluster is None:
                raise ProviderError(ErrorCode.PHASE_FAILED, f"cluster {self.cluster} disappeared", retryable=True)
            state = container_v1.Cluster.Status(cluster.status).name
            if state == "ERROR":
                raise classify_operation_error(0, cluster.status_message or "cluster is in ERROR", what)
            if ready(cluster):
                return cluster
            await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: cluster {state}")
