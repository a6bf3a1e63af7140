"""An update's VALIDATE on EKS: refuse, before anything changes, what EKS would refuse part-way.

The planner already refuses downgrades and skipped minors against the record; this checks the
change against the cloud as it is now (the record may lag it, for instance after a rollback
left the control plane on the version it reached):

- the control plane moves at most one minor version up, to a version the catalog offers;
- a node group moves to a version no newer than the control plane will run, and never down;
- RESIZE and UPGRADE name groups that exist in EKS;
- ADD names a group that does not exist in EKS: one that does is not in the record (the planner
  adds only names the record lacks), so creating it would adopt or collide with a group nobody
  asked for;
- the instance types of added groups are offered in the region.

Every refusal is a permanent `INVALID_SPEC` that says what to do.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.aws.addons import AddonSteps
from clusterflow.activities.providers.aws.clients import Account
from clusterflow.activities.providers.aws.control_plane import ControlPlaneSteps
from clusterflow.activities.providers.aws.node_groups import NodeGroupSteps
from clusterflow.activities.providers.aws.steps import instance_types, minor
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.contracts.changes import ChangeKind
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import PhaseInput
from clusterflow.records.catalog import current_catalog


def _refuse(message: str) -> ProviderError:
    return ProviderError(ErrorCode.INVALID_SPEC, message, retryable=False)


class UpdateSteps(ControlPlaneSteps, NodeGroupSteps, AddonSteps):
    async def _validate_update(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, cluster: dict[str, Any]
    ) -> None:
        if account.level != "manage":
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCESS_LEVEL_TOO_LOW,
                f"AWS account {account.account_id} is connected read-only. Remedy: reconnect it with level 'manage'.",
                retryable=False,
            )
        change = inp.change
        current = str(cluster.get("version") or "")
        target = change.target_version
        if target and target != current:
            versions = (await current_catalog(self.pool)).versions("aws", "eks", inp.region)
            offered = versions.supported_versions if versions else ()
            if target not in offered:
                raise _refuse(f"kubernetesVersion {target} is not offered on EKS (offered: {', '.join(offered)})")
            (cur_major, cur_minor), (new_major, new_minor) = minor(current), minor(target)
            if new_major != cur_major or not cur_minor < new_minor <= cur_minor + 1:
                raise _refuse(
                    f"EKS upgrades the control plane one minor version at a time and never downgrades: it runs "
                    f"{current}, the update asks for {target}. Remedy: update to {cur_major}.{cur_minor + 1} first"
                    + (
                        " (or deploy a new cluster at the older version)"
                        if (new_major, new_minor) < minor(current)
                        else ""
                    )
                    + "."
                )
        control_plane = target or current
        eks = account.client("eks")
        existing: dict[str, dict[str, Any]] = {}
        for name in (await account.call(eks, "list_nodegroups", clusterName=inp.cluster_name)).get("nodegroups") or []:
            existing[name] = await self._describe_nodegroup(account, inp.cluster_name, name) or {}
        for item in change.node_groups:
            group = existing.get(item.name)
            if item.kind == ChangeKind.ADD and group is not None:
                raise _refuse(
                    f"node group {item.name} exists in EKS cluster {inp.cluster_name} but not in the cluster's "
                    "record. Remedy: delete it in EKS or choose another name for the new group."
                )
            if item.kind in (ChangeKind.RESIZE, ChangeKind.UPGRADE) and group is None:
                raise _refuse(
                    f"node group {item.name} does not exist in EKS cluster {inp.cluster_name}. Remedy: update the "
                    "cluster to the node groups it has, or add this one."
                )
            if item.kind == ChangeKind.UPGRADE and group is not None:
                wanted, running = minor(item.target_version), minor(str(group.get("version") or item.target_version))
                if wanted > minor(control_plane):
                    raise _refuse(
                        f"node group {item.name} cannot run {item.target_version}, newer than the control plane "
                        f"({control_plane}). Remedy: upgrade the control plane first."
                    )
                if wanted < running:
                    raise _refuse(
                        f"node group {item.name} runs {group.get('version')} and EKS cannot downgrade it to "
                        f"{item.target_version}. Remedy: add a new group at the older version instead."
                    )
        added = sorted({t for c in change.of_kind(ChangeKind.ADD) for t in instance_types(c.new_group)})
        if added:
            await account.call(account.client("ec2"), "describe_instance_types", InstanceTypes=added)
        await reporter.event("plan", f"update of {inp.cluster_name} is valid on EKS", fraction=1.0)
