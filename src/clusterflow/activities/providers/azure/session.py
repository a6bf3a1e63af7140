"""One phase's view of AKS (`AksSession`): names, calls that classify errors, pollers awaited with
heartbeats.

- ARM's PUT is idempotent: putting the same managed cluster or agent pool again converges on
  the same resource, so a retried phase re-sends the desired state instead of needing a request
  token. A resource already Creating/Updating refuses a second operation (409
  OperationNotAllowed), so `run` waits for it.
- Long-running operations are the SDK's pollers (ARM's `Azure-AsyncOperation` protocol,
  honouring `Retry-After`); the activity heartbeats while the poller works in its thread, so
  cancellation and worker loss are noticed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.core.polling import LROPoller
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice import models as aks

from clusterflow.activities.providers.azure.errors import classify_azure_error
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.contracts.operations import ErrorCode

T = TypeVar("T")

IN_PROGRESS = {"Creating", "Updating", "Upgrading", "Scaling", "Deleting", "Starting", "Stopping"}
# How many polls a PUT waits for another operation on the cluster before giving up this attempt
# (Temporal then retries it).
_BUSY_POLLS = 240


class AksSession:
    """One phase's view of AKS: names, calls that classify errors, pollers awaited with heartbeats."""

    def __init__(
        self, client: ContainerServiceClient, reporter: PhaseReporter, group: str, cluster: str, poll_seconds: float
    ) -> None:
        self.client = client
        self.reporter = reporter
        self.group = group
        self.cluster = cluster
        self.poll_seconds = poll_seconds

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
        except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as err:
            raise classify_azure_error(err, what) from err

    async def get_cluster(self) -> aks.ManagedCluster | None:
        try:
            return await self.call(
                f"describe managed cluster {self.cluster}", self.client.managed_clusters.get, self.group, self.cluster
            )
        except ProviderError as err:
            if err.code == ErrorCode.CLOUD_NOT_FOUND:
                return None
            raise

    async def get_pool(self, name: str) -> aks.AgentPool | None:
        try:
            return await self.call(
                f"describe agent pool {name}", self.client.agent_pools.get, self.group, self.cluster, name
            )
        except ProviderError as err:
            if err.code == ErrorCode.CLOUD_NOT_FOUND:
                return None
            raise

    async def run(self, what: str, begin: Callable[..., LROPoller[T]], *args: Any, **kwargs: Any) -> T:
        """Start a long-running operation (waiting out one already in flight) and wait for it."""
        for _ in range(_BUSY_POLLS):
            try:
                poller = await self.call(what, begin, *args, **kwargs)
                break
            except ProviderError as err:
                if err.code != ErrorCode.CLOUD_BUSY:
                    raise
                await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: waiting for another AKS operation")
        else:
            raise ProviderError(ErrorCode.CLOUD_BUSY, f"{what}: the cluster stayed busy", retryable=True)
        await self.reporter.event(f"lro/{what}", f"{what}: started")
        while not poller.done():
            await self.reporter.heartbeat_while(0.2, f"{what}: {poller.status()}")
        try:
            return poller.result()
        except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as err:
            raise classify_azure_error(err, what) from err

    async def wait_settled(self, what: str) -> aks.ManagedCluster:
        """Wait while the cluster has an operation in flight (one we did not start, or a lost one)."""
        while True:
            cluster = await self.get_cluster()
            if cluster is None:
                raise ProviderError(
                    ErrorCode.PHASE_FAILED, f"managed cluster {self.cluster} disappeared", retryable=True
                )
            if cluster.provisioning_state not in IN_PROGRESS:
                return cluster
            await self.reporter.heartbeat_while(self.poll_seconds, f"{what}: {cluster.provisioning_state}")
