"""EKS managed node groups: create and wait for them, delete them, and apply node-group changes.

A mixin of the provider (`steps.py`); it needs the network's subnets and the node role. Update
phases read `PhaseInput.change["nodeGroups"]`:

    [{"name": "workers", "changeType": "ADD" | "RESIZE" | "REMOVE" | "UPGRADE",
      "minNode": 1, "maxNode": 5,          # ADD and RESIZE
      "desiredNode": 2,                    # RESIZE, optional
      "machineTypes": ["m5.large"],        # ADD
      "kubernetesVersion": "1.32"}]        # UPGRADE (default: the cluster's)
"""

from __future__ import annotations

from functools import partial
from typing import Any

from clusterflow.activities.providers.aws.clients import Account, request_token
from clusterflow.activities.providers.aws.iam import NODE_ROLE_POLICIES, IamSteps, role_names
from clusterflow.activities.providers.aws.network import NetworkSteps
from clusterflow.activities.providers.aws.steps import MACHINE_TYPES, instance_types, node_groups
from clusterflow.activities.providers.phases import PhaseReporter
from clusterflow.workflows.contracts import PhaseInput, PhaseResult

_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


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
        self, inp: PhaseInput, account: Account, group: dict[str, Any], node_role: str, subnet_ids: list[str]
    ) -> bool:
        if await self._describe_nodegroup(account, inp.cluster_name, group["name"]) is not None:
            return False
        minimum, maximum = int(group.get("minNode", 1)), int(group.get("maxNode", 1))
        await account.call(
            account.client("eks"),
            "create_nodegroup",
            clusterName=inp.cluster_name,
            nodegroupName=group["name"],
            scalingConfig={"minSize": minimum, "maxSize": maximum, "desiredSize": minimum},
            subnets=subnet_ids,
            instanceTypes=instance_types(group) or [MACHINE_TYPES["medium"]],
            nodeRole=node_role,
            labels={str(k): str(v) for k, v in (group.get("labels") or {}).items()},
            taints=[
                {"key": t["key"], "value": t.get("value") or "", "effect": _TAINT_EFFECTS[t["effect"]]}
                for t in group.get("taints") or []
            ],
            capacityType="SPOT" if group.get("instanceType") == "spot" else "ON_DEMAND",
            clientRequestToken=request_token(inp.operation_id, inp.phase, group["name"]),
            tags=self._tags(inp),
        )
        return True

    async def _node_groups(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        _, node_role_name = role_names(inp.cluster_name)
        node_role = await self._ensure_role(
            inp, reporter, account, node_role_name, "ec2.amazonaws.com", NODE_ROLE_POLICIES
        )
        subnet_ids = await self._subnet_ids(inp, account)
        groups = node_groups(inp.spec)
        for group in groups:
            created = await self._create_nodegroup(inp, account, group, node_role, subnet_ids)
            verb = "requested" if created else "found existing"
            await reporter.event(f"nodegroup/{group['name']}/{verb}", f"{verb} node group {group['name']}")
        for index, group in enumerate(groups):
            await self._wait(
                reporter,
                f"node group {group['name']}",
                partial(self._describe_nodegroup, account, inp.cluster_name, group["name"]),
                ready={"ACTIVE"},
                failed={"CREATE_FAILED", "DEGRADED", "DELETING", "DELETE_FAILED"},
            )
            await reporter.event(
                f"nodegroup/{group['name']}/active",
                f"node group {group['name']} ACTIVE",
                fraction=(index + 1) / len(groups),
            )
        return PhaseResult(inp.phase, resources=[f"eks-nodegroup/{g['name']}" for g in groups])

    async def _delete_node_groups(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, cluster: dict[str, Any] | None
    ) -> PhaseResult:
        eks = account.client("eks")
        names: list[str] = []
        if cluster is not None:
            names = list((await account.call(eks, "list_nodegroups", clusterName=inp.cluster_name))["nodegroups"])
        for name in names:
            await account.call(
                eks,
                "delete_nodegroup",
                clusterName=inp.cluster_name,
                nodegroupName=name,
                missing=("ResourceNotFoundException",),
            )
            await reporter.event(f"nodegroup/{name}", f"deleting node group {name}")
        for name in names:
            await self._wait_gone(
                reporter,
                f"node group {name}",
                partial(self._describe_nodegroup, account, inp.cluster_name, name),
            )
        return PhaseResult(inp.phase, resources=[f"eks-nodegroup/{n}" for n in names])

    async def _update_node_groups(
        self,
        inp: PhaseInput,
        reporter: PhaseReporter,
        account: Account,
        cluster: dict[str, Any],
        changes: list[dict[str, Any]],
    ) -> PhaseResult:
        eks = account.client("eks")
        done: list[str] = []
        for index, change in enumerate(changes):
            name, kind = change["name"], change["changeType"]
            token = request_token(inp.operation_id, inp.phase, f"{kind}-{name}")
            if kind == "ADD":
                _, node_role_name = role_names(inp.cluster_name)
                node_role = await self._ensure_role(
                    inp, reporter, account, node_role_name, "ec2.amazonaws.com", NODE_ROLE_POLICIES
                )
                subnet_ids = list((cluster.get("resourcesVpcConfig") or {}).get("subnetIds") or [])
                await self._create_nodegroup(inp, account, change, node_role, subnet_ids)
                await self._wait(
                    reporter,
                    f"node group {name}",
                    partial(self._describe_nodegroup, account, inp.cluster_name, name),
                    ready={"ACTIVE"},
                    failed={"CREATE_FAILED", "DEGRADED"},
                )
            elif kind == "REMOVE":
                await account.call(
                    eks,
                    "delete_nodegroup",
                    clusterName=inp.cluster_name,
                    nodegroupName=name,
                    missing=("ResourceNotFoundException",),
                )
                await self._wait_gone(
                    reporter,
                    f"node group {name}",
                    partial(self._describe_nodegroup, account, inp.cluster_name, name),
                )
            elif kind == "RESIZE":
                group = await self._describe_nodegroup(account, inp.cluster_name, name) or {}
                current = group.get("scalingConfig") or {}
                minimum = int(change.get("minNode", current.get("minSize", 1)))
                maximum = int(change.get("maxNode", current.get("maxSize", minimum)))
                desired = int(
                    change.get("desiredNode", min(max(int(current.get("desiredSize", minimum)), minimum), maximum))
                )
                wanted = {"minSize": minimum, "maxSize": maximum, "desiredSize": desired}
                if {k: current.get(k) for k in wanted} != wanted:
                    started = await account.call(
                        eks,
                        "update_nodegroup_config",
                        clusterName=inp.cluster_name,
                        nodegroupName=name,
                        scalingConfig=wanted,
                        clientRequestToken=token,
                    )
                    await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], name)
            elif kind == "UPGRADE":
                version = change.get("kubernetesVersion") or cluster.get("version")
                group = await self._describe_nodegroup(account, inp.cluster_name, name) or {}
                if group.get("version") != version:
                    started = await account.call(
                        eks,
                        "update_nodegroup_version",
                        clusterName=inp.cluster_name,
                        nodegroupName=name,
                        version=version,
                        clientRequestToken=token,
                    )
                    await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], name)
            done.append(f"{kind.lower()}:{name}")
            await reporter.event(
                f"nodegroup/{name}/{kind}", f"{kind} of node group {name} done", fraction=(index + 1) / len(changes)
            )
        return PhaseResult(inp.phase, resources=done)
