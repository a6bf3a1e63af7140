"""EKS managed add-ons (settings `aws_eks_addons`): create and wait for them, delete them.

A mixin of the provider (`steps.py`). Updates leave add-ons alone: managed add-ons follow the
cluster.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from clusterflow.activities.providers.aws.clients import Account, request_token
from clusterflow.activities.providers.aws.steps import AwsSteps
from clusterflow.activities.providers.phases import PhaseReporter
from clusterflow.contracts.phase_activity import PhaseInput, PhaseResult


class AddonSteps(AwsSteps):
    async def _describe_addon(self, account: Account, cluster: str, name: str) -> dict[str, Any] | None:
        found = await account.call(
            account.client("eks"),
            "describe_addon",
            clusterName=cluster,
            addonName=name,
            missing=("ResourceNotFoundException",),
        )
        return None if found is None else dict(found["addon"])

    async def _addons(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        eks = account.client("eks")
        for name in self.addons:
            if await self._describe_addon(account, inp.cluster_name, name) is None:
                await account.call(
                    eks,
                    "create_addon",
                    clusterName=inp.cluster_name,
                    addonName=name,
                    resolveConflicts="OVERWRITE",
                    clientRequestToken=request_token(inp.operation_id, inp.phase, name),
                    tags=self._tags(inp),
                )
                await reporter.event(f"addon/{name}", f"requested add-on {name}")
        for index, name in enumerate(self.addons):
            await self._wait(
                reporter,
                f"add-on {name}",
                partial(self._describe_addon, account, inp.cluster_name, name),
                ready={"ACTIVE"},
                failed={"CREATE_FAILED", "DEGRADED", "DELETE_FAILED"},
            )
            await reporter.event(
                f"addon/{name}/active", f"add-on {name} ACTIVE", fraction=(index + 1) / len(self.addons)
            )
        return PhaseResult(inp.phase, resources=[f"eks-addon/{name}" for name in self.addons])

    async def _delete_addons(
        self, inp: PhaseInput, reporter: PhaseReporter, account: Account, cluster: dict[str, Any] | None
    ) -> PhaseResult:
        eks = account.client("eks")
        names: list[str] = []
        if cluster is not None:
            names = list((await account.call(eks, "list_addons", clusterName=inp.cluster_name))["addons"])
        for name in names:
            await account.call(
                eks,
                "delete_addon",
                clusterName=inp.cluster_name,
                addonName=name,
                missing=("ResourceNotFoundException",),
            )
        for name in names:
            await self._wait_gone(
                reporter, f"add-on {name}", partial(self._describe_addon, account, inp.cluster_name, name)
            )
        await reporter.event("addons", f"deleted {len(names)} add-ons", fraction=1.0)
        return PhaseResult(inp.phase, resources=[f"eks-addon/{n}" for n in names])
