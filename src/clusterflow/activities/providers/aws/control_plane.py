"""The EKS cluster itself: create and wait for ACTIVE, upgrade its version, delete it.

A mixin of the provider (`steps.py`); it needs the network's subnets and the cluster role.
Update phases read `PhaseInput.change`: `{"kubernetesVersion": "1.32"}` moves the control plane
one minor step (checked by the provider's VALIDATE).
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.aws.clients import Account, request_token
from clusterflow.activities.providers.aws.iam import CLUSTER_ROLE_POLICIES, IamSteps, role_names
from clusterflow.activities.providers.aws.network import NetworkSteps
from clusterflow.activities.providers.phases import PhaseReporter
from clusterflow.workflows.contracts import PhaseInput, PhaseResult


class ControlPlaneSteps(NetworkSteps, IamSteps):
    async def _control_plane(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        cluster_role, _ = role_names(inp.cluster_name)
        role_arn = await self._ensure_role(
            inp, reporter, account, cluster_role, "eks.amazonaws.com", CLUSTER_ROLE_POLICIES
        )
        await reporter.event("role", f"cluster role {cluster_role} ready", fraction=0.1)
        eks = account.client("eks")
        existing = await self._describe_cluster(account, inp.cluster_name)
        if existing is not None:
            self._must_be_ours(inp, existing)
            await reporter.event("cluster/found", f"found existing EKS cluster {inp.cluster_name}", fraction=0.2)
        else:
            subnet_ids = await self._subnet_ids(inp, account)
            await account.call(
                eks,
                "create_cluster",
                name=inp.cluster_name,
                version=self._version(inp.spec),
                roleArn=role_arn,
                resourcesVpcConfig={"subnetIds": subnet_ids, "endpointPublicAccess": True},
                clientRequestToken=request_token(inp.operation_id, inp.phase, inp.cluster_name),
                tags=self._tags(inp),
            )
            await reporter.event("cluster/requested", f"requested EKS cluster {inp.cluster_name}", fraction=0.2)
        cluster = await self._wait(
            reporter,
            f"cluster {inp.cluster_name}",
            lambda: self._describe_cluster(account, inp.cluster_name),
            ready={"ACTIVE"},
            failed={"FAILED", "DELETING"},
        )
        assert cluster is not None
        return PhaseResult(
            inp.phase,
            resources=[f"eks-cluster/{inp.cluster_name}", f"iam-role/{cluster_role}"],
            outputs={"cluster": {"endpoint": cluster.get("endpoint"), "arn": cluster.get("arn")}},
        )

    async def _update_control_plane(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, cluster: dict[str, Any], target: str | None
    ) -> PhaseResult:
        if not target or cluster.get("version") == target:
            await reporter.event("version", f"control plane already runs {cluster.get('version')}", fraction=1.0)
            return PhaseResult(inp.phase)
        started = await account.call(
            account.client("eks"),
            "update_cluster_version",
            name=inp.cluster_name,
            version=target,
            clientRequestToken=request_token(inp.operation_id, inp.phase, f"version-{target}"),
        )
        await reporter.event("version", f"upgrading control plane to {target}", fraction=0.1)
        await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], None)
        return PhaseResult(inp.phase, outputs={"cluster": {"kubernetesVersion": target}})

    async def _delete_control_plane(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, cluster: dict[str, Any] | None
    ) -> PhaseResult:
        eks = account.client("eks")
        if cluster is not None:
            await account.call(eks, "delete_cluster", name=inp.cluster_name, missing=("ResourceNotFoundException",))
            await reporter.event("cluster", f"deleting EKS cluster {inp.cluster_name}", fraction=0.2)
            await self._wait_gone(
                reporter, f"cluster {inp.cluster_name}", lambda: self._describe_cluster(account, inp.cluster_name)
            )
        await self._delete_role(account, role_names(inp.cluster_name)[0])
        return PhaseResult(inp.phase, resources=[f"eks-cluster/{inp.cluster_name}"])
