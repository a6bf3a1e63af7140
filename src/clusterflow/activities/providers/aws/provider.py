"""The `aws` provider: EKS clusters through boto3, in the customer's connected account.

`AwsProvider` ties the concept mixins together (network, IAM, control plane, node groups,
add-ons: one module each, on the shared `AwsSteps`) and holds what spans them: which connected
account a phase acts as (`account_for`, run inside the phase so a missing account is a reported,
classified failure), the per-phase dispatch, VALIDATE and VERIFY, and the ownership check before
teardown. Registered by `adapter.phase_activities("aws", ...)`.

Update phases read `PhaseInput.change`:

    {"kubernetesVersion": "1.32",                       # control plane (one minor step)
     "nodeGroups": [{"name": "workers", "changeType": "ADD" | "RESIZE" | "REMOVE" | "UPGRADE",
                     "minNode": 1, "maxNode": 5,          # ADD and RESIZE
                     "desiredNode": 2,                    # RESIZE, optional
                     "machineTypes": ["m5.large"],        # ADD
                     "kubernetesVersion": "1.32"}]}       # UPGRADE (default: the cluster's)
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.adapter import Unprepared
from clusterflow.activities.providers.aws.addons import AddonSteps
from clusterflow.activities.providers.aws.clients import Account
from clusterflow.activities.providers.aws.control_plane import ControlPlaneSteps
from clusterflow.activities.providers.aws.iam import role_names
from clusterflow.activities.providers.aws.node_groups import NodeGroupSteps
from clusterflow.activities.providers.aws.steps import (
    CLUSTER_TAG,
    KUBERNETES_VERSIONS,
    eks_block,
    instance_types,
    node_groups,
)
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.records import cloud_accounts
from clusterflow.workflows.cloud_contracts import CloudErrorCode
from clusterflow.workflows.contracts import ErrorCode, Phase, PhaseInput, PhaseResult


class AwsProvider(Unprepared, ControlPlaneSteps, NodeGroupSteps, AddonSteps):
    # -- the phases (adapter.Provider) --

    async def deploy(self, inp: PhaseInput, reporter: PhaseReporter, bound: None) -> PhaseResult:
        account = await self._account(inp)
        return await self._deploy(inp, reporter, account)

    async def delete(self, inp: PhaseInput, reporter: PhaseReporter, bound: None) -> PhaseResult:
        account = await self._account(inp)
        return await self._delete(inp, reporter, account)

    async def update(self, inp: PhaseInput, reporter: PhaseReporter, bound: None) -> PhaseResult:
        account = await self._account(inp)
        return await self._update(inp, reporter, account)

    # -- account --

    async def _account(self, inp: PhaseInput) -> Account:
        return await self.account_for(inp.cluster_id, inp.spec, inp.region, f"cf-{inp.operation_id}")

    async def account_for(self, cluster_id: str, spec: dict[str, Any], region: str, session_name: str) -> Account:
        """The cluster's connected account, as assumed-role sessions in `region`."""
        organization_id = await self.pool.fetchval("SELECT organization_id FROM clusters WHERE id = $1", cluster_id)
        wanted = eks_block(spec).get("accountId")
        row = await cloud_accounts.find_usable(self.pool, organization_id, "aws", wanted) if organization_id else None
        if row is None:
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
                f"no connected AWS account{' ' + wanted if wanted else ''} for this organization. Remedy: connect "
                "it with POST /v1/cloud-accounts/aws, create the CloudFormation stack from the returned template, "
                "and wait until the connection is CONNECTED.",
                retryable=False,
            )
        external_id = await cloud_accounts.external_id(self.pool, organization_id, "aws")
        credentials = await self.clients.assume_role(
            row["role_arn"], external_id, session_name, min(int(row["session_seconds"]), 3600)
        )
        return Account(
            self.clients,
            self.clients.session(credentials, region),
            row["account_id"],
            row["role_arn"],
            row["level"],
        )

    # -- deploy --

    async def _deploy(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        if inp.phase == Phase.VALIDATE:
            return await self._validate(inp, reporter, account)
        if inp.phase == Phase.NETWORK:
            return await self._network(inp, reporter, account)
        if inp.phase == Phase.CONTROL_PLANE:
            return await self._control_plane(inp, reporter, account)
        if inp.phase == Phase.NODE_GROUPS:
            return await self._node_groups(inp, reporter, account)
        if inp.phase == Phase.ADDONS:
            return await self._addons(inp, reporter, account)
        if inp.phase == Phase.VERIFY:
            return await self._verify(inp, reporter, account)
        raise ProviderError(ErrorCode.INVALID_SPEC, f"unknown deploy phase {inp.phase}", retryable=False)

    async def _validate(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        identity = await account.call(account.client("sts"), "get_caller_identity")
        if identity["Account"] != account.account_id:
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCESS_DENIED,
                f"the connected role answers for account {identity['Account']}, not {account.account_id}. "
                "Remedy: reconnect the account.",
                retryable=False,
            )
        await reporter.event("identity", f"acting in AWS account {account.account_id}", fraction=0.2)
        if account.level != "manage":
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCESS_LEVEL_TOO_LOW,
                f"AWS account {account.account_id} is connected with level {account.level!r}, which cannot create "
                "clusters. Remedy: reconnect it with level 'manage' (POST /v1/cloud-accounts/aws, forceUpdate=true).",
                retryable=False,
            )
        version = self._version(inp.spec)
        if version not in KUBERNETES_VERSIONS:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                f"kubernetesVersion {version} is not offered on EKS by this control plane "
                f"(supported: {', '.join(KUBERNETES_VERSIONS)}). Remedy: pick a supported version.",
                retryable=False,
            )
        wanted = sorted({t for group in node_groups(inp.spec) for t in instance_types(group)})
        ec2 = account.client("ec2")
        if wanted:
            await account.call(ec2, "describe_instance_types", InstanceTypes=wanted)
            await reporter.event("machine-types", f"instance types offered: {', '.join(wanted)}", fraction=0.5)
        block = eks_block(inp.spec)
        if block.get("vpcId"):
            await account.call(ec2, "describe_vpcs", VpcIds=[block["vpcId"]])
        else:
            await self._check_vpc_quota(inp, reporter, account, ec2)
        return PhaseResult(inp.phase, outputs={"accountId": account.account_id})

    async def _verify(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        cluster = await self._describe_cluster(account, inp.cluster_name)
        if cluster is None or cluster.get("status") != "ACTIVE":
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED,
                f"EKS cluster {inp.cluster_name} is {cluster.get('status') if cluster else 'missing'}",
                retryable=True,
            )
        listed = await account.call(account.client("eks"), "list_nodegroups", clusterName=inp.cluster_name)
        for name in listed.get("nodegroups") or []:
            group = await self._describe_nodegroup(account, inp.cluster_name, name)
            if group is None or group.get("status") != "ACTIVE":
                raise ProviderError(
                    CloudErrorCode.CLOUD_RESOURCE_FAILED,
                    f"node group {name} is {group.get('status') if group else 'missing'}",
                    retryable=True,
                )
        await reporter.event("healthy", f"cluster {inp.cluster_name} and its node groups are ACTIVE", fraction=1.0)
        return PhaseResult(
            inp.phase,
            outputs={
                "cluster": {
                    "kubernetesVersion": cluster.get("version"),
                    "endpoint": cluster.get("endpoint"),
                    "arn": cluster.get("arn"),
                    "accountId": account.account_id,
                }
            },
        )

    # -- delete --

    async def _delete(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        cluster = await self._describe_cluster(account, inp.cluster_name)
        if cluster is not None and (cluster.get("tags") or {}).get(CLUSTER_TAG) not in (None, inp.cluster_id):
            raise ProviderError(
                CloudErrorCode.CLOUD_INVALID_PARAMETER,
                f"EKS cluster {inp.cluster_name} belongs to another cluster record; refusing to delete it.",
                retryable=False,
            )
        if inp.phase == Phase.ADDONS:
            return await self._delete_addons(inp, reporter, account, cluster)
        if inp.phase == Phase.NODE_GROUPS:
            return await self._delete_node_groups(inp, reporter, account, cluster)
        if inp.phase == Phase.CONTROL_PLANE:
            return await self._delete_control_plane(inp, reporter, account, cluster)
        if inp.phase == Phase.NETWORK:
            await self._delete_role(account, role_names(inp.cluster_name)[1])
            deleted = await self._delete_network(inp, reporter, account)
            return PhaseResult(inp.phase, resources=deleted)
        return PhaseResult(inp.phase)

    # -- update --

    async def _update(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        cluster = await self._describe_cluster(account, inp.cluster_name)
        if cluster is None:
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED,
                f"EKS cluster {inp.cluster_name} does not exist in account {account.account_id}",
                retryable=False,
            )
        self._must_be_ours(inp, cluster)
        changes = list(inp.change.get("nodeGroups") or [])
        target = inp.change.get("kubernetesVersion")
        if inp.phase == Phase.VALIDATE:
            await self._validate_update(inp, account, cluster, target, changes)
            await reporter.event("plan", f"update of {inp.cluster_name} is valid", fraction=1.0)
            return PhaseResult(inp.phase)
        if inp.phase == Phase.CONTROL_PLANE:
            return await self._update_control_plane(inp, reporter, account, cluster, target)
        if inp.phase == Phase.NODE_GROUPS:
            return await self._update_node_groups(inp, reporter, account, cluster, changes)
        if inp.phase == Phase.VERIFY:
            return await self._verify(inp, reporter, account)
        return PhaseResult(inp.phase)  # ADDONS: managed add-ons follow the cluster; nothing to change

    async def _validate_update(
        self,
        inp: PhaseInput,
        account: Account,
        cluster: dict[str, Any],
        target: str | None,
        changes: list[dict[str, Any]],
    ) -> None:
        if account.level != "manage":
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCESS_LEVEL_TOO_LOW,
                f"AWS account {account.account_id} is connected read-only. Remedy: reconnect it with level 'manage'.",
                retryable=False,
            )
        if target:
            current = str(cluster.get("version") or "")
            if target not in KUBERNETES_VERSIONS:
                raise ProviderError(
                    ErrorCode.INVALID_SPEC, f"kubernetesVersion {target} is not offered on EKS", retryable=False
                )
            cur_minor, new_minor = int(current.split(".")[1]), int(target.split(".")[1])
            if new_minor < cur_minor or new_minor > cur_minor + 1:
                raise ProviderError(
                    ErrorCode.INVALID_SPEC,
                    f"EKS upgrades one minor version at a time and never downgrades: {current} -> {target}. "
                    f"Remedy: upgrade to 1.{cur_minor + 1} first.",
                    retryable=False,
                )
        listed = await account.call(account.client("eks"), "list_nodegroups", clusterName=inp.cluster_name)
        existing = set(listed.get("nodegroups") or [])
        for change in changes:
            kind, name = change.get("changeType"), change.get("name")
            if kind == "ADD":
                continue  # an existing group is taken as already added
            if kind not in {"RESIZE", "REMOVE", "UPGRADE"}:
                raise ProviderError(ErrorCode.INVALID_SPEC, f"unknown changeType {kind!r} for {name}", retryable=False)
            if kind != "REMOVE" and name not in existing:
                raise ProviderError(
                    ErrorCode.INVALID_SPEC, f"node group {name} does not exist on {inp.cluster_name}", retryable=False
                )
