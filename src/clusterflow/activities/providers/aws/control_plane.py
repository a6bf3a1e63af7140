"""The EKS cluster itself: create and wait for ACTIVE, upgrade its version, set its tags, delete it.

A mixin of the provider (`steps.py`); it needs the network's subnets and the cluster role.

Deploy honours `provisioner.eks.privateCluster` (the API endpoint reachable only from inside the
VPC: `endpointPrivateAccess` on, `endpointPublicAccess` off) and gives the control plane every
subnet of the cluster's network.

An update's CONTROL_PLANE pass reads `inp.change` (`UpdateChange`): `version` moves the control
plane one minor step (the update's VALIDATE refused anything else), and `tags`, when given, is
the cluster's whole user tag set: the EKS cluster's tags become exactly those plus ours
(`clusterflow:*`). The rollback pass (`inp.stage == "rollback"`, the plan's inverse) never moves
the version, EKS cannot downgrade, and restores the tags. Both report the version EKS reports
when the pass ends (`PhaseResult.kubernetes_version`), after waiting for any version update in
flight to settle, so the record says the version the cloud has.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.aws.clients import Account
from clusterflow.activities.providers.aws.iam import CLUSTER_ROLE_POLICIES, IamSteps, role_names
from clusterflow.activities.providers.aws.network import NetworkSteps
from clusterflow.activities.providers.aws.steps import RESERVED_TAG_PREFIXES, eks_settings
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.phase_activity import ClusterFacts, PhaseInput, PhaseResult


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
            private = eks_settings(inp.cluster).private_cluster
            await account.call(
                eks,
                "create_cluster",
                name=inp.cluster_name,
                version=self._version(inp),
                roleArn=role_arn,
                resourcesVpcConfig={
                    "subnetIds": subnet_ids,
                    "endpointPublicAccess": not private,
                    "endpointPrivateAccess": private,
                },
                clientRequestToken=self._token(inp, inp.cluster_name),
                tags=self._tags(inp),
            )
            await reporter.event("cluster/requested", f"requested EKS cluster {inp.cluster_name}", fraction=0.2)
        cluster = await self._wait_cluster_active(reporter, account, inp.cluster_name)
        return PhaseResult(
            inp.phase,
            resources=[f"eks-cluster/{inp.cluster_name}", f"iam-role/{cluster_role}"],
            facts=ClusterFacts(endpoint=cluster.get("endpoint"), cloud_resource_id=cluster.get("arn")),
        )

    async def _wait_cluster_active(self, reporter: PhaseReporter, account: Account, name: str) -> dict[str, Any]:
        cluster = await self._wait(
            reporter,
            f"cluster {name}",
            lambda: self._describe_cluster(account, name),
            ready={"ACTIVE"},
            failed={"FAILED", "DELETING"},
        )
        assert cluster is not None
        return cluster

    async def _update_control_plane(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, cluster: dict[str, Any]
    ) -> PhaseResult:
        done: list[str] = []
        target = inp.change.target_version
        if cluster.get("status") != "ACTIVE":
            # A version update in flight (e.g. the forward pass of a cancelled update): EKS refuses
            # another change until it ends, and the version to report is the one it ends on.
            cluster = await self._wait_cluster_active(reporter, account, inp.cluster_name)
        if target and cluster.get("version") != target:
            started = await account.call(
                account.client("eks"),
                "update_cluster_version",
                name=inp.cluster_name,
                version=target,
                clientRequestToken=self._token(inp, f"version-{target}"),
            )
            await reporter.event("version", f"upgrading control plane to {target}", fraction=0.1)
            await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], None)
            done.append(f"version:{target}")
        elif target:
            await reporter.event("version", f"control plane already runs {target}", fraction=0.5)
        if inp.change.tags is not None:
            done += await self._set_tags(inp, reporter, account, cluster, dict(inp.change.tags))
        reached = await self._wait_cluster_active(reporter, account, inp.cluster_name)
        version = str(reached.get("version") or "") or None
        await reporter.event("reached", f"control plane runs {version}", fraction=1.0)
        return PhaseResult(inp.phase, resources=done, facts=ClusterFacts(kubernetes_version=version))

    async def _set_tags(
        self,
        inp: PhaseInput,
        reporter: PhaseReporter,
        account: Account,
        cluster: dict[str, Any],
        wanted: dict[str, str],
    ) -> list[str]:
        """Make the cluster's user tags exactly `wanted` (ours are kept, AWS's own untouched)."""
        arn = cluster.get("arn")
        if not arn:
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED, f"EKS cluster {inp.cluster_name} has no ARN", retryable=True
            )
        eks = account.client("eks")
        current = dict((await account.call(eks, "list_tags_for_resource", resourceArn=arn)).get("tags") or {})
        desired = {k: v for k, v in wanted.items() if not k.startswith(RESERVED_TAG_PREFIXES)} | self._own_tags(inp)
        changed = {k: v for k, v in desired.items() if current.get(k) != v}
        stale = sorted(k for k in current if k not in desired and not k.startswith("aws:"))
        if changed:
            await account.call(eks, "tag_resource", resourceArn=arn, tags=changed)
        if stale:
            await account.call(eks, "untag_resource", resourceArn=arn, tagKeys=stale)
        await reporter.event("tags", f"tags set: {len(changed)} added or changed, {len(stale)} removed", fraction=0.9)
        return [f"tag:{k}" for k in sorted(changed)] + [f"untag:{k}" for k in stale]

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
