"""What every step of the AWS provider shares: its injected clients and settings, the spec's
`provisioner.eks` block, tags, and waiting.

The provider is one class assembled from a mixin per concept (network, IAM, control plane, node
groups, add-ons), each in its own module; they all derive from `AwsSteps`, so a step calls the
shared helpers as methods, exactly as when the provider was one module.

- Every phase is idempotent. Names are deterministic (the EKS cluster is the cluster's name,
  roles are `cf-<name>-cluster|node`, network pieces carry the tag `clusterflow:cluster-id`),
  and each create is preceded by a describe. A worker that dies mid-phase is replaced by a retry
  that finds what exists and waits for it.
- Waiting (cluster ACTIVE, node groups, add-ons, updates, deletions) is a describe poll inside
  the activity that heartbeats (`_wait`), so cancellation and worker loss are noticed within
  one heartbeat timeout.

`provisioner.eks` (api/schemas/clusters.py `EksProvisioner`) fields used: `accountId` (which
connected account; default the organization's most recently verified one),
`kubernetesVersion`, `vpcId` + `subnets` (bring your own network: `{"<any name>": [{"id":
"subnet-..."}]}`; neither is ever deleted), `vpcCIDR` (of the VPC we create), `tags`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from clusterflow.activities.providers.aws.clients import Account, AwsClients
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.workflows.cloud_contracts import CloudErrorCode
from clusterflow.workflows.contracts import PhaseInput

KUBERNETES_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33")
DEFAULT_KUBERNETES_VERSION = "1.31"
# Generic sizes of the portable document, as EC2 instance types; anything else is taken as an
# EC2 instance type and checked with DescribeInstanceTypes.
MACHINE_TYPES = {"small": "t3.medium", "medium": "m5.xlarge", "large": "m5.2xlarge", "xlarge": "m5.4xlarge"}
CLUSTER_TAG = "clusterflow:cluster-id"


def eks_block(spec: dict[str, Any]) -> dict[str, Any]:
    return dict((spec.get("provisioner") or {}).get("eks") or {})


def node_groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    cluster_spec = spec.get("clusterSpec") or {}
    return list(((cluster_spec.get("dataPlane") or {}).get("nodeGroups")) or [])


def instance_types(group: dict[str, Any]) -> list[str]:
    return [MACHINE_TYPES.get(m, m) for m in group.get("machineTypes") or []]


class AwsSteps:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        clients: AwsClients,
        *,
        poll_seconds: float,
        addons: list[str],
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.poll_seconds = poll_seconds
        self.addons = list(addons)

    def _version(self, spec: dict[str, Any]) -> str:
        return str(eks_block(spec).get("kubernetesVersion") or DEFAULT_KUBERNETES_VERSION)

    def _tags(self, inp: PhaseInput, **extra: str) -> dict[str, str]:
        user = {str(k): str(v) for k, v in (eks_block(inp.spec).get("tags") or {}).items()}
        return user | {CLUSTER_TAG: inp.cluster_id, "clusterflow:cluster-name": inp.cluster_name} | extra

    def _tag_spec(self, inp: PhaseInput, resource: str, **extra: str) -> list[dict[str, Any]]:
        tags = self._tags(inp, **extra)
        return [{"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]

    async def _wait(
        self,
        reporter: PhaseReporter,
        what: str,
        describe: Callable[[], Any],
        *,
        ready: set[str],
        failed: set[str],
        gone_ok: bool = False,
    ) -> dict[str, Any] | None:
        """Poll `describe` (returns the resource or None) until its status is in `ready`."""
        last = None
        while True:
            resource = await describe()
            if resource is None:
                if gone_ok:
                    return None
                raise ProviderError(CloudErrorCode.CLOUD_RESOURCE_FAILED, f"{what} disappeared", retryable=True)
            status = resource.get("status")
            if status in ready:
                return dict(resource)
            if status in failed:
                issues = (resource.get("health") or {}).get("issues") or resource.get("errors") or []
                detail = "; ".join(str(i.get("message") or i.get("errorMessage") or i) for i in issues) or status
                raise ProviderError(
                    CloudErrorCode.CLOUD_RESOURCE_FAILED,
                    f"{what} ended {status}: {detail}. Remedy: inspect it in the AWS console, fix the cause, "
                    "then delete the cluster or retry.",
                    retryable=False,
                )
            if status != last:
                await reporter.event(f"wait/{what}/{status}", f"{what} is {status}")
                last = status
            await reporter.heartbeat_while(self.poll_seconds, f"waiting for {what} ({status})")

    async def describe_cluster(self, account: Account, name: str) -> dict[str, Any] | None:
        return await self._describe_cluster(account, name)

    async def _describe_cluster(self, account: Account, name: str) -> dict[str, Any] | None:
        found = await account.call(
            account.client("eks"), "describe_cluster", name=name, missing=("ResourceNotFoundException",)
        )
        return None if found is None else dict(found["cluster"])

    @staticmethod
    def _must_be_ours(inp: PhaseInput, cluster: dict[str, Any]) -> None:
        if (cluster.get("tags") or {}).get(CLUSTER_TAG) != inp.cluster_id:
            raise ProviderError(
                CloudErrorCode.CLOUD_INVALID_PARAMETER,
                f"an EKS cluster named {inp.cluster_name} already exists in this account and region and was not "
                "created for this cluster. Remedy: choose another clusterName or region.",
                retryable=False,
            )

    async def _wait_gone(self, reporter: PhaseReporter, what: str, describe: Callable[[], Any]) -> None:
        await self._wait(reporter, what, describe, ready=set(), failed={"DELETE_FAILED"}, gone_ok=True)

    async def _wait_update(
        self, reporter: PhaseReporter, account: Account, cluster: str, update_id: str, nodegroup: str | None
    ) -> None:
        eks = account.client("eks")
        extra: dict[str, Any] = {"nodegroupName": nodegroup} if nodegroup else {}

        async def describe() -> dict[str, Any]:
            found = await account.call(eks, "describe_update", name=cluster, updateId=update_id, **extra)
            update = dict(found["update"])
            # describe_update says Successful/Failed/Cancelled/InProgress; map to _wait's vocabulary.
            update["status"] = {"Successful": "ACTIVE", "InProgress": "IN_PROGRESS"}.get(
                update["status"], update["status"]
            )
            return update

        what = f"update {update_id} of {nodegroup or cluster}"
        await self._wait(reporter, what, describe, ready={"ACTIVE"}, failed={"Failed", "Cancelled"})
