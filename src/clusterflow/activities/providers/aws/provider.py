"""The `aws` provider: EKS clusters through boto3, in the customer's connected account.

`AwsProvider` ties the concept mixins together (network, IAM, control plane, node groups,
add-ons, updates: one module each, on the shared `AwsSteps`) and holds what spans them: which
connected account a phase acts as (`account_for`, run inside the phase so a missing account is
a reported, classified failure), the per-phase dispatch of deploy and delete, the deploy's
VALIDATE and VERIFY, and the ownership check before teardown. Registered by
`adapter.phase_activities("aws", ...)`.

Deploy and delete phases read the typed `inp.cluster`; update phases also `inp.change`
(`updates.py`). Deploy VALIDATE first runs `catalog.spec_checks.check_deploy_spec`, the checks
the API's dry run runs, then what only the account can answer (identity, access level,
instance types, the VPC or the VPC quota).
"""

from __future__ import annotations

from clusterflow.activities.providers.adapter import Unprepared
from clusterflow.activities.providers.aws.clients import Account
from clusterflow.activities.providers.aws.iam import role_names
from clusterflow.activities.providers.aws.steps import CLUSTER_TAG, eks_settings, instance_types, user_tags
from clusterflow.activities.providers.aws.updates import UpdateSteps
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog.spec_checks import check_deploy_spec
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import ClusterFacts, PhaseInput, PhaseResult
from clusterflow.contracts.phases import Phase
from clusterflow.records import cloud_accounts, clusters
from clusterflow.records.catalog import current_catalog


class AwsProvider(Unprepared, UpdateSteps):
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
        wanted = eks_settings(inp.cluster).account_id
        return await self.account_for(inp.cluster_id, wanted, inp.region, f"cf-{inp.operation_id}")

    async def account_for(self, cluster_id: str, wanted: str | None, region: str, session_name: str) -> Account:
        """The cluster's connected account (`wanted`, else the organization's most recently
        verified one), as assumed-role sessions in `region`."""
        organization_id = await clusters.organization_of(self.pool, cluster_id)
        row = await cloud_accounts.find_usable(self.pool, organization_id, "aws", wanted) if organization_id else None
        if row is None or organization_id is None:
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
                f"no connected AWS account{' ' + wanted if wanted else ''} for this organization. Remedy: connect "
                "it with POST /v1/cloud-accounts/aws, create the CloudFormation stack from the returned template, "
                "and wait until the connection is CONNECTED.",
                retryable=False,
            )
        external_id = await cloud_accounts.external_id(self.pool, organization_id, "aws")
        credentials = await self.clients.assume_role(
            row.role_arn, external_id, session_name, min(int(row.session_seconds), 3600)
        )
        return Account(
            self.clients,
            self.clients.session(credentials, region),
            row.account_id,
            row.role_arn,
            row.level,
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
        problems = check_deploy_spec(inp.spec, await current_catalog(self.pool))
        if problems:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                "the cluster document cannot be deployed on EKS: "
                + "; ".join(f"{p.field}: {p.message}" for p in problems),
                retryable=False,
            )
        await reporter.event("spec", "the cluster document passes the catalog's checks", fraction=0.1)
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
        wanted = sorted({t for group in inp.cluster.node_groups for t in instance_types(group)})
        ec2 = account.client("ec2")
        if wanted:
            await account.call(ec2, "describe_instance_types", InstanceTypes=wanted)
            await reporter.event("machine-types", f"instance types offered: {', '.join(wanted)}", fraction=0.5)
        vpc_id = eks_settings(inp.cluster).vpc_id
        if vpc_id:
            await account.call(ec2, "describe_vpcs", VpcIds=[vpc_id])
        else:
            await self._check_vpc_quota(inp, reporter, account, ec2)
        return PhaseResult(inp.phase, facts=ClusterFacts(account_id=account.account_id))

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
            facts=ClusterFacts(
                kubernetes_version=cluster.get("version"),
                endpoint=cluster.get("endpoint"),
                cloud_resource_id=cluster.get("arn"),
                account_id=account.account_id,
                # The record's tags are the cluster's user tags as EKS holds them, which an
                # update plans from (and its rollback restores).
                tags=user_tags(dict(cluster.get("tags") or {})),
            ),
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
        if inp.phase == Phase.VALIDATE:
            await self._validate_update(inp, reporter, account, cluster)
            return PhaseResult(inp.phase)
        if inp.phase == Phase.CONTROL_PLANE:
            return await self._update_control_plane(inp, reporter, account, cluster)
        if inp.phase == Phase.NODE_GROUPS:
            return await self._update_node_groups(inp, reporter, account, cluster)
        if inp.phase == Phase.VERIFY:
            return await self._verify(inp, reporter, account)
        # ADDONS: EKS keeps managed add-ons on their versions; nothing here moves them.
        await reporter.event("addons", "managed add-ons are left on their versions", fraction=1.0)
        return PhaseResult(inp.phase)
