"""EKS managed node groups: create and wait for them, delete them, and apply node-group changes.

A mixin of the provider (`steps.py`); it needs the network's subnets and the node role.

A node group is created from its typed `NodeGroupSpec`: instance types (generic sizes through
the catalog), min/max (desired starts at min), labels, taints, spot or on-demand capacity,
`amiType` from `provisioner.eks.amiFamily`, in the node subnets (`network.py`) and at the
control plane's version.

An update's NODE_GROUPS pass applies `inp.change.node_groups` in order (the rollback pass runs
the plan's inverse the same way):

- ADD creates the group (`change.new_group`); one that exists already is this operation's own
  from an earlier attempt, or on rollback a group the forward pass never got to remove;
- REMOVE deletes it and waits until it is gone (absent is done);
- RESIZE sets min/max, the desired size clamped into the new range (or as given);
- UPGRADE moves the group's nodes to `change.target_version`.

Before changing a group the pass waits for the group to settle: EKS refuses a change while
another runs (say, the forward pass's resize of a cancelled update, which EKS finishes anyway),
and comparing against a size about to change would skip the change that undoes it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from clusterflow.activities.providers.aws.clients import Account
from clusterflow.activities.providers.aws.iam import NODE_ROLE_POLICIES, IamSteps, role_names
from clusterflow.activities.providers.aws.network import NetworkSteps
from clusterflow.activities.providers.aws.steps import eks_settings, instance_types
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.catalog import aws as catalog
from clusterflow.contracts.changes import ChangeKind, NodeGroupChange
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.cluster import NodeGroupSpec
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult

_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
# A group in one of these is busy: EKS refuses changes until it leaves it.
_BUSY = {"CREATING", "UPDATING", "DELETING"}
_SETTLED = {"ACTIVE", "DEGRADED", "CREATE_FAILED", "DELETE_FAILED"}


class NodeGroupSteps(NetworkSteps, IamSteps):
    async def _describe_nodegroup(self, account: Account, cluster: str, name: str) -> dict[str, Any] | None:
        found = await account.call(
            account.client("eks"),
            "describe_nodegroup",
            clusterName=cluster,
            nodegroupName=name,
            missing=("ResourceNotFoundException",),
        )
        return None if found is None else dict(found["nodegroup"])

    async def _create_nodegroup(
        self, inp: PhaseInput, account: Account, group: NodeGroupSpec, node_role: str, version: str | None
    ) -> bool:
        if await self._describe_nodegroup(account, inp.cluster_name, group.name) is not None:
            return False
        ami_family = eks_settings(inp.cluster).ami_family
        optional: dict[str, Any] = {}
        if ami_family:
            optional["amiType"] = catalog.AMI_TYPES[ami_family]
        if version:
            optional["version"] = version
        await account.call(
            account.client("eks"),
            "create_nodegroup",
            clusterName=inp.cluster_name,
            nodegroupName=group.name,
            scalingConfig={"minSize": group.min_nodes, "maxSize": group.max_nodes, "desiredSize": group.min_nodes},
            subnets=await self._node_subnet_ids(inp, account, group),
            instanceTypes=instance_types(group) or [catalog.MACHINE_TYPES["medium"]],
            nodeRole=node_role,
            labels=dict(group.labels),
            taints=[{"key": t.key, "value": t.value, "effect": _TAINT_EFFECTS[t.effect]} for t in group.taints],
            capacityType="SPOT" if group.spot else "ON_DEMAND",
            clientRequestToken=self._token(inp, group.name),
            tags=self._tags(inp),
            **optional,
        )
        return True

    async def _node_role(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> str:
        _, node_role_name = role_names(inp.cluster_name)
        return await self._ensure_role(inp, reporter, account, node_role_name, "ec2.amazonaws.com", NODE_ROLE_POLICIES)

    async def _wait_nodegroup_active(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, name: str
    ) -> None:
        await self._wait(
            reporter,
            f"node group {name}",
            partial(self._describe_nodegroup, account, inp.cluster_name, name),
            ready={"ACTIVE"},
            failed={"CREATE_FAILED", "DEGRADED", "DELETING", "DELETE_FAILED"},
        )

    async def _node_groups(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        node_role = await self._node_role(inp, reporter, account)
        groups = inp.cluster.node_groups
        for group in groups:
            created = await self._create_nodegroup(inp, account, group, node_role, self._version(inp))
            verb = "requested" if created else "found existing"
            await reporter.event(f"nodegroup/{group.name}/{verb}", f"{verb} node group {group.name}")
        for index, group in enumerate(groups):
            await self._wait_nodegroup_active(inp, reporter, account, group.name)
            await reporter.event(
                f"nodegroup/{group.name}/active",
                f"node group {group.name} ACTIVE",
                fraction=(index + 1) / len(groups),
            )
        return PhaseResult(inp.phase, resources=[f"eks-nodegroup/{g.name}" for g in groups])

    async def _delete_node_groups(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, cluster: dict[str, Any] | None
    ) -> PhaseResult:
        eks = account.client("eks")
        names: list[str] = []
        if cluster is not None:
            names = list((await account.call(eks, "list_nodegroups", clusterName=inp.cluster_name))["nodegroups"])
        for name in names:
            await self._remove_nodegroup(inp, reporter, account, name, wait=False)
        for name in names:
            await self._wait_gone(
                reporter,
                f"node group {name}",
                partial(self._describe_nodegroup, account, inp.cluster_name, name),
            )
        return PhaseResult(inp.phase, resources=[f"eks-nodegroup/{n}" for n in names])

    # -- updates --

    async def _settled_nodegroup(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, name: str
    ) -> dict[str, Any] | None:
        """The group once no change of it runs (None: it does not exist)."""
        found = await self._describe_nodegroup(account, inp.cluster_name, name)
        if found is None or found.get("status") not in _BUSY:
            return found
        return await self._wait(
            reporter,
            f"node group {name}",
            partial(self._describe_nodegroup, account, inp.cluster_name, name),
            ready=_SETTLED,
            failed=set(),
            gone_ok=True,
        )

    async def _remove_nodegroup(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, name: str, *, wait: bool = True
    ) -> None:
        group = await self._settled_nodegroup(inp, reporter, account, name)
        if group is not None:
            await account.call(
                account.client("eks"),
                "delete_nodegroup",
                clusterName=inp.cluster_name,
                nodegroupName=name,
                missing=("ResourceNotFoundException",),
            )
            await reporter.event(f"nodegroup/{name}", f"deleting node group {name}")
        if wait:
            await self._wait_gone(
                reporter, f"node group {name}", partial(self._describe_nodegroup, account, inp.cluster_name, name)
            )

    async def _update_node_groups(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, cluster: dict[str, Any]
    ) -> PhaseResult:
        changes = inp.change.node_groups
        done: list[str] = []
        for index, change in enumerate(changes):
            if change.kind == ChangeKind.ADD:
                await self._add_nodegroup(inp, reporter, account, change.new_group)
            elif change.kind == ChangeKind.REMOVE:
                await self._remove_nodegroup(inp, reporter, account, change.name)
            elif change.kind == ChangeKind.RESIZE:
                await self._resize_nodegroup(inp, reporter, account, change)
            else:
                await self._upgrade_nodegroup(inp, reporter, account, change)
            done.append(f"{change.kind.lower()}:{change.name}")
            await reporter.event(
                f"nodegroup/{change.name}/{change.kind}",
                f"{change.describe()}: done",
                fraction=(index + 1) / len(changes),
            )
        return PhaseResult(inp.phase, resources=done)

    async def _add_nodegroup(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, group: NodeGroupSpec
    ) -> None:
        existing = await self._settled_nodegroup(inp, reporter, account, group.name)
        if existing is not None and existing.get("status") == "DELETE_FAILED":
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED,
                f"node group {group.name} is DELETE_FAILED and cannot be created again. Remedy: delete it in the "
                "AWS console, then update the cluster again.",
                retryable=False,
            )
        node_role = await self._node_role(inp, reporter, account)
        # New nodes run the control plane's version, as EKS defaults them; asked for explicitly.
        cluster = await self._describe_cluster(account, inp.cluster_name)
        version = str((cluster or {}).get("version") or "") or None
        created = await self._create_nodegroup(inp, account, group, node_role, version)
        verb = "requested" if created else "found existing"
        await reporter.event(f"nodegroup/{group.name}/{verb}", f"{verb} node group {group.name}")
        await self._wait_nodegroup_active(inp, reporter, account, group.name)

    async def _resize_nodegroup(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, change: NodeGroupChange
    ) -> None:
        group = await self._existing_nodegroup(inp, reporter, account, change.name)
        size = change.new_size
        current = group.get("scalingConfig") or {}
        desired = size.desired_nodes
        if desired is None:
            desired = min(max(int(current.get("desiredSize", size.min_nodes)), size.min_nodes), size.max_nodes)
        wanted = {"minSize": size.min_nodes, "maxSize": size.max_nodes, "desiredSize": desired}
        if {k: current.get(k) for k in wanted} == wanted:
            return
        started = await account.call(
            account.client("eks"),
            "update_nodegroup_config",
            clusterName=inp.cluster_name,
            nodegroupName=change.name,
            scalingConfig=wanted,
            clientRequestToken=self._token(inp, f"RESIZE-{change.name}"),
        )
        await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], change.name)

    async def _upgrade_nodegroup(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, change: NodeGroupChange
    ) -> None:
        group = await self._existing_nodegroup(inp, reporter, account, change.name)
        if group.get("version") == change.target_version:
            return
        started = await account.call(
            account.client("eks"),
            "update_nodegroup_version",
            clusterName=inp.cluster_name,
            nodegroupName=change.name,
            version=change.target_version,
            clientRequestToken=self._token(inp, f"UPGRADE-{change.name}"),
        )
        await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], change.name)

    async def _existing_nodegroup(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, name: str
    ) -> dict[str, Any]:
        group = await self._settled_nodegroup(inp, reporter, account, name)
        if group is None or group.get("status") not in {"ACTIVE", "DEGRADED"}:
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED,
                f"node group {name} of {inp.cluster_name} is {group.get('status') if group else 'missing'} in EKS. "
                "Remedy: inspect it in the AWS console; update the cluster to the node groups it should have.",
                retryable=False,
            )
        return group
