"""CLUSTER_DEPLOY, and the checks a deploy (real or dry run) passes before anything is written.

The checks run in one place (`deploy_checks`), so the dry run answers exactly what the real call
would: the spec against the provider's catalog (`catalog.spec_checks.check_deploy_spec`, the same
function the providers' VALIDATE phases use), then what the database knows about the account the
deploy would act through, read as the provider reads it. Every problem is a 422 `INVALID_SPEC`
naming its field. Only what needs the cloud itself (credentials answering, quotas) is left to
VALIDATE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterflow.api.commands.common import execution_policy, issue_approval, parse_cluster_document
from clusterflow.api.deps import OperationContext
from clusterflow.api.enqueue import OperationCommand, OperationPlan
from clusterflow.api.errors import ApiError
from clusterflow.api.schemas.clusters import DeployDryRunResult, K8sCluster
from clusterflow.catalog.spec_checks import SpecProblem, check_deploy_spec
from clusterflow.contracts.cluster import ClusterDefinition
from clusterflow.contracts.operations import ClusterState, DeployInput, OperationType
from clusterflow.ids import cluster_id as new_cluster_id
from clusterflow.records import cloud_accounts, clusters, federated_accounts, withdrawals
from clusterflow.records.catalog import current_catalog
from clusterflow.records.db import Conn, Executor
from clusterflow.settings import Settings
from clusterflow.workflows.registry import WORKFLOW_TYPES


@dataclass(frozen=True)
class AccountProblem:
    """A deploy refused for the account it would act through (not the spec's shape)."""

    field: str
    message: str
    type: str


def _invalid_spec(problems: list[SpecProblem | AccountProblem]) -> ApiError:
    details = [
        {"field": p.field, "message": p.message, "type": p.type if isinstance(p, AccountProblem) else "invalid_spec"}
        for p in problems
    ]
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError(422, "INVALID_SPEC", f"invalid deploy spec: {first.field}: {first.message}{more}", details)


async def _account_problems(
    db: Executor, organization_id: str, spec: dict[str, Any], settings: Settings
) -> tuple[list[AccountProblem], str]:
    """The account, project or subscription the deploy would use, resolved as its provider's
    phases resolve it, from the database alone; and a sentence saying what was found."""
    provider = spec["provider"]
    provisioner = spec.get("provisioner") or {}
    if provider == "aws":
        wanted = (provisioner.get("eks") or {}).get("accountId")
        field = "spec.provisioner.eks.accountId" if wanted else "spec.provisioner"
        row = await cloud_accounts.find_usable(db, organization_id, "aws", wanted)
        if row is None:
            return [
                AccountProblem(
                    field,
                    f"no connected AWS account{' ' + wanted if wanted else ''} for this organization. Remedy: "
                    "connect it with POST /v1/cloud-accounts/aws, create the CloudFormation stack from the "
                    "returned template, and wait until the connection is CONNECTED.",
                    "cloud_account_not_connected",
                )
            ], ""
        if row.level != "manage":
            return [
                AccountProblem(
                    field,
                    f"AWS account {row.account_id} is connected with level {row.level!r}, which cannot "
                    "create clusters. Remedy: reconnect it with level 'manage' (POST /v1/cloud-accounts/aws, "
                    "forceUpdate=true).",
                    "cloud_access_level_too_low",
                )
            ], ""
        return [], f"AWS account {row.account_id} is connected with level manage"
    if provider == "gcp":
        gke = provisioner.get("gke") or {}
        account = await federated_accounts.latest_connected(db, organization_id, "gcp", spec["clusterName"])
        account_project = dict(account.identity or {}).get("projectId") if account else None
        project = gke.get("projectId") or account_project or settings.gcp_default_project
        if not project:
            return [
                AccountProblem(
                    "spec.provisioner.gke.projectId",
                    "no GCP project: set provisioner.gke.projectId, connect a GCP project for this cluster name "
                    "(POST /v1/cloud-accounts/gcp), or configure CLUSTERFLOW_GCP_DEFAULT_PROJECT",
                    "no_project",
                )
            ], ""
        via = "the connected GCP account" if account else "the control plane's GCP credentials"
        return [], f"GKE project {project} (through {via})"
    if provider == "azure":
        aks = provisioner.get("aks") or {}
        account = await federated_accounts.latest_connected(db, organization_id, "azure", spec["clusterName"])
        params = dict(account.params or {}) if account else {}
        subscription = (
            aks.get("subscriptionId") or params.get("subscriptionId") or settings.azure_default_subscription_id
        )
        group = aks.get("resourceGroup") or params.get("resourceGroup") or settings.azure_default_resource_group
        problems = []
        for value, name in ((subscription, "subscriptionId"), (group, "resourceGroup")):
            if not value:
                problems.append(
                    AccountProblem(
                        f"spec.provisioner.aks.{name}",
                        f"no Azure {name}: set provisioner.aks.subscriptionId and resourceGroup, connect an Azure "
                        "subscription for this cluster name (POST /v1/cloud-accounts/azure), or configure "
                        "CLUSTERFLOW_AZURE_DEFAULT_SUBSCRIPTION_ID / _RESOURCE_GROUP",
                        "no_subscription",
                    )
                )
        via = "the connected Azure account" if account else "the control plane's Azure credentials"
        return problems, f"Azure subscription {subscription}, resource group {group} (through {via})"
    return [], ""


async def deploy_checks(db: Executor, organization_id: str, spec: dict[str, Any], settings: Settings) -> list[str]:
    """Refuse (422 INVALID_SPEC, every problem listed) a deploy its provider would refuse; else
    say what was checked."""
    problems: list[SpecProblem | AccountProblem] = list(check_deploy_spec(spec, await current_catalog(db)))
    found: list[AccountProblem] = []
    account = ""
    if not any(p.field == "spec.provisioner.type" for p in problems):
        found, account = await _account_problems(db, organization_id, spec, settings)
    problems += found
    if problems:
        raise _invalid_spec(problems)
    checks = [
        f"the spec against the {spec['provider']} catalog: region, Kubernetes version, machine types, zones "
        "and provisioner fields"
    ]
    if account:
        checks.append(account)
    return checks


@dataclass(frozen=True, kw_only=True)
class DeployCluster(OperationCommand):
    # The document as the client sent it (a legacy flat body, wrapped): what /spec returns.
    document: dict[str, Any]
    parsed: K8sCluster
    # The normalized spec with defaults filled in: what the workflow gets.
    spec: dict[str, Any]
    definition: ClusterDefinition
    cluster_id: str = field(default_factory=new_cluster_id)

    @classmethod
    def from_body(cls, ctx: OperationContext, body: dict[str, Any]) -> DeployCluster:
        """The deploy a request body asks for; 422 for a malformed document or a provider this
        control plane does not run."""
        parsed = parse_cluster_document(body)
        provider, enabled = parsed.spec.provider, ctx.settings.enabled_providers
        if provider not in enabled:
            raise ApiError(
                422,
                "PROVIDER_NOT_ENABLED",
                f"provider {provider!r} is not enabled on this control plane (enabled: {', '.join(enabled)})",
                [{"field": "spec.provider", "message": "provider not enabled", "type": "provider_not_enabled"}],
            )
        document = {"apiVersion": parsed.apiVersion, "kind": parsed.kind, "spec": body.get("spec", body)}
        if parsed.metadata is not None:
            document["metadata"] = {"labels": dict(parsed.metadata.labels)}
        spec = parsed.spec.model_dump(mode="json", exclude_none=True)
        return cls(ctx=ctx, document=document, parsed=parsed, spec=spec, definition=ClusterDefinition.from_spec(spec))

    async def dry_run(self) -> DeployDryRunResult:
        checks = await deploy_checks(self.ctx.pool, self.ctx.organization_id, self.spec, self.ctx.settings)
        return DeployDryRunResult(
            valid=True,
            message=f"cluster {self.parsed.spec.clusterName} would be deployed on {self.parsed.spec.provider}; "
            "checked " + "; ".join(checks),
            checks=checks,
        )

    async def prepare(self, conn: Conn) -> OperationPlan:
        ctx, spec, name = self.ctx, self.parsed.spec, self.parsed.spec.clusterName
        definition = self.definition
        # After the idempotency lookup (a replay answers as the first call did), before any write.
        await deploy_checks(conn, ctx.organization_id, self.spec, ctx.settings)
        labels = dict(self.parsed.metadata.labels) if self.parsed.metadata else {}
        approval = await issue_approval(self, conn, OperationType.CLUSTER_DEPLOY, labels=labels)
        topology = self.spec["clusterSpec"]
        await clusters.insert(
            conn,
            cluster_id=self.cluster_id,
            organization_id=ctx.organization_id,
            name=name,
            provider=spec.provider,
            provisioner_type=spec.provisioner.type,
            region=spec.region,
            kubernetes_version=spec.provisioner.kubernetes_version(),
            state=ClusterState.PROVISIONING,
            spec=self.document,
            control_plane=(topology.get("controlPlane") or {}).get("nodeGroup"),
            worker_nodes=topology["dataPlane"]["nodeGroups"],
            tags=dict(definition.tags),
            labels=dict(self.parsed.metadata.labels) if self.parsed.metadata else {},
        )
        return OperationPlan(
            operation_type=OperationType.CLUSTER_DEPLOY,
            workflow_type=WORKFLOW_TYPES[OperationType.CLUSTER_DEPLOY],
            workflow_input=DeployInput(
                operation_id=self.operation_id,
                organization_id=ctx.organization_id,
                cluster_id=self.cluster_id,
                cluster_name=name,
                provider=spec.provider,
                region=spec.region,
                spec=self.spec,
                policy=execution_policy(ctx.settings),
                approval=approval.requirement if approval else None,
                definition=definition,
            ),
            cluster_id=self.cluster_id,
            cluster_name=name,
            accepted_message="deploy accepted",
            approval=approval,
            show_token=approval is not None and approval.shown_to(ctx.principal),
        )

    async def abandon(self, conn: Conn) -> None:
        await withdrawals.delete_new_cluster(conn, self.cluster_id)
