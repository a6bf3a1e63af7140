"""What every step of the AWS provider shares: its injected clients and settings, the cluster's
typed EKS settings, tags, and waiting.

The provider is one class assembled from a mixin per concept (network, IAM, control plane, node
groups, add-ons, update checks), each in its own module; they all derive from `AwsSteps`, so a step calls the
shared helpers as methods, exactly as when the provider was one module.

- Every phase is idempotent. Names are deterministic (the EKS cluster is the cluster's name,
  roles are `clusterflow-c-<name>` and `clusterflow-n-<name>`, network pieces carry the tag `clusterflow:cluster-id`),
  and each create is preceded by a describe. A worker that dies mid-phase is replaced by a retry
  that finds what exists and waits for it.
- Waiting (cluster ACTIVE, node groups, add-ons, updates, deletions) is a describe poll inside
  the activity that heartbeats (`_wait`), so cancellation and worker loss are noticed within
  one heartbeat timeout.

Every step reads the typed `ClusterDefinition` (`inp.cluster`, EKS settings in `eks_settings`)
and, in an update, the typed `UpdateChange` (`inp.change`); no step looks up keys of the
document. The catalog (`clusterflow.catalog.aws`) owns the offered versions, the default
version, generic machine sizes and AMI families, so the API's dry run and VALIDATE agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clusterflow.activities.providers.aws.clients import Account, AwsClients, request_token
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import aws as catalog
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.cluster import ClusterDefinition, EksSettings, NodeGroupSpec
from clusterflow.contracts.phase_activity import PhaseInput
from clusterflow.records.db import DbPool

CLUSTER_TAG = "clusterflow:cluster-id"
NAME_TAG = "clusterflow:cluster-name"
# Tag keys the user does not own: ours, and those AWS sets itself.
RESERVED_TAG_PREFIXES = ("clusterflow:", "aws:")


def eks_settings(cluster: ClusterDefinition) -> EksSettings:
    return cluster.eks if cluster.eks is not None else EksSettings()


def instance_types(group: NodeGroupSpec) -> list[str]:
    """The group's machine types as EC2 instance types (generic sizes through the catalog)."""
    return [catalog.MACHINE_TYPES.get(m, m) for m in group.machine_types]


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags a user set, without ours and AWS's own."""
    return {k: v for k, v in tags.items() if not k.startswith(RESERVED_TAG_PREFIXES)}


def minor(version: str) -> tuple[int, int]:
    """`1.31` or `1.31.2` as (1, 31)."""
    major, minor_, *_ = (int(p) for p in version.split("."))
    return major, minor_


class AwsSteps:
    def __init__(
        self,
        pool: DbPool,
        clients: AwsClients,
        *,
        poll_seconds: float,
        addons: list[str],
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.poll_seconds = poll_seconds
        self.addons = list(addons)

    @staticmethod
    def _version(inp: PhaseInput) -> str:
        return eks_settings(inp.cluster).kubernetes_version or catalog.DEFAULT_KUBERNETES_VERSION

    @staticmethod
    def _own_tags(inp: PhaseInput) -> dict[str, str]:
        return {CLUSTER_TAG: inp.cluster_id, NAME_TAG: inp.cluster_name}

    def _tags(self, inp: PhaseInput, **extra: str) -> dict[str, str]:
        """What everything we create is tagged with: the user's tags, then ours."""
        return user_tags(dict(eks_settings(inp.cluster).tags)) | self._own_tags(inp) | extra

    @staticmethod
    def _token(inp: PhaseInput, resource: str) -> str:
        """The request token of one step: a rollback pass is a step of its own, not a repeat."""
        phase = f"{inp.phase}/{inp.stage}" if inp.stage else inp.phase
        return request_token(inp.operation_id, phase, resource)

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
