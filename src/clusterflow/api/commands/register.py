"""CLUSTER_REGISTER: record a cluster its owners run, and the one-time token its agent presents.

A cluster whose registration failed or whose agent was revoked is registered again under its
ID with a new token; any other live cluster of that name refuses (409). The token is shown
once, in the manifest: a replay of the request says so instead of repeating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clusterflow.api.agent_manifest import agent_manifest, install_script, manifest_yaml
from clusterflow.api.commands.common import execution_policy
from clusterflow.api.deps import OperationContext
from clusterflow.api.enqueue import Accepted, OperationCommand, OperationPlan
from clusterflow.api.errors import ApiError
from clusterflow.api.schemas.clusters import API_VERSION
from clusterflow.api.schemas.registration import RegisterRequest, Registration
from clusterflow.api.views import timestamp
from clusterflow.contracts.agent import RegisterInput
from clusterflow.contracts.operations import ClusterState, OperationType
from clusterflow.ids import cluster_id as new_cluster_id
from clusterflow.records import clusters, idempotency, registrations, withdrawals
from clusterflow.records.db import Conn
from clusterflow.records.errors import IdempotencyKeyReused
from clusterflow.settings import Settings
from clusterflow.workflows.registry import WORKFLOW_TYPES


def manifest_for(settings: Settings, cluster_name: str, token: str, architecture: str) -> str:
    return manifest_yaml(
        agent_manifest(
            cluster_name=cluster_name,
            url=settings.api_url,
            token=token,
            architecture=architecture,
            namespace=settings.agent_namespace,
            image=settings.agent_image,
        )
    )


async def _is_replay(ctx: OperationContext, fingerprint: bytes) -> bool:
    """Whether `enqueue` will answer from the idempotency store rather than register anew."""
    if not ctx.idempotency_key:
        return False
    try:
        return await idempotency.lookup(ctx.pool, ctx.organization_id, ctx.idempotency_key, fingerprint) is not None
    except IdempotencyKeyReused:
        return True


async def _reregistered_id(ctx: OperationContext, cluster_name: str, fingerprint: bytes) -> str | None:
    """The ID of the registered cluster this name registers again (its registration failed or
    its agent was revoked); None for a new cluster; 409 for any other live cluster of the name."""
    org = ctx.organization_id
    existing_id = await registrations.find_live_cluster_by_name(ctx.pool, org, cluster_name)
    if existing_id is None or await _is_replay(ctx, fingerprint):
        return None  # a replay: enqueue answers the first response (or refuses a reused key)
    existing = await clusters.get(ctx.pool, org, existing_id)
    registration = await registrations.get(ctx.pool, existing_id)
    if (
        existing is not None
        and registrations.is_registered(existing)
        and registration is not None
        and (existing.state == ClusterState.FAILED or registration.revoked_at is not None)
    ):
        return existing_id
    raise ApiError(
        409,
        "CLUSTER_NAME_TAKEN",
        f"a cluster named {cluster_name!r} already exists",
        {"clusterName": cluster_name, "clusterId": existing_id},
    )


@dataclass(frozen=True, kw_only=True)
class RegisterCluster(OperationCommand):
    cluster_name: str
    request: RegisterRequest
    cluster_id: str
    reissue: bool
    token: str
    expires_at: datetime

    @classmethod
    async def create(
        cls, ctx: OperationContext, cluster_name: str, request: RegisterRequest, fingerprint: bytes
    ) -> RegisterCluster:
        reissued_id = await _reregistered_id(ctx, cluster_name, fingerprint)
        return cls(
            ctx=ctx,
            cluster_name=cluster_name,
            request=request,
            cluster_id=reissued_id or new_cluster_id(),
            reissue=reissued_id is not None,
            token=registrations.new_registration_token(),
            expires_at=datetime.now(UTC) + timedelta(seconds=ctx.settings.registration_token_ttl_seconds),
        )

    async def prepare(self, conn: Conn) -> OperationPlan:
        req, token_hash = self.request, registrations.hash_secret(self.token)
        if self.reissue:
            await clusters.set_state(conn, self.cluster_id, ClusterState.PROVISIONING)
            await registrations.reissue(
                conn,
                cluster_id=self.cluster_id,
                architecture=req.architecture,
                operation_id=self.operation_id,
                token_hash=token_hash,
                token_expires_at=self.expires_at,
            )
        else:
            await self._insert(conn, token_hash)
        settings = self.ctx.settings
        return OperationPlan(
            operation_type=OperationType.CLUSTER_REGISTER,
            workflow_type=WORKFLOW_TYPES[OperationType.CLUSTER_REGISTER],
            workflow_input=RegisterInput(
                operation_id=self.operation_id,
                organization_id=self.ctx.organization_id,
                cluster_id=self.cluster_id,
                cluster_name=self.cluster_name,
                architecture=req.architecture,
                timeout_seconds=settings.registration_timeout_seconds,
                policy=execution_policy(settings),
            ),
            cluster_id=self.cluster_id,
            cluster_name=self.cluster_name,
            accepted_message="registration accepted: apply the agent manifest in the cluster",
            metadata={"architecture": req.architecture},
        )

    async def _insert(self, conn: Conn, token_hash: bytes) -> None:
        req = self.request
        document = {
            "apiVersion": API_VERSION,
            "kind": "ClusterRegistration",
            "spec": {
                "clusterName": self.cluster_name,
                "architecture": req.architecture,
                "region": req.region,
                "kubernetesVersion": req.kubernetesVersion,
            },
        }
        if req.labels:
            document["metadata"] = {"labels": dict(req.labels)}
        await clusters.insert(
            conn,
            cluster_id=self.cluster_id,
            organization_id=self.ctx.organization_id,
            name=self.cluster_name,
            provider=registrations.REGISTERED_PROVIDER,
            provisioner_type=registrations.AGENT_PROVISIONER,
            region=req.region or registrations.UNKNOWN_REGION,
            kubernetes_version=req.kubernetesVersion,
            state=ClusterState.PROVISIONING,
            spec=document,
            control_plane=None,
            worker_nodes=[],
            labels=dict(req.labels),
        )
        await registrations.insert(
            conn,
            cluster_id=self.cluster_id,
            organization_id=self.ctx.organization_id,
            architecture=req.architecture,
            operation_id=self.operation_id,
            token_hash=token_hash,
            token_expires_at=self.expires_at,
        )

    async def abandon(self, conn: Conn) -> None:
        if self.reissue:  # registered before, and failed or revoked: it stays, as it was
            await clusters.set_state(conn, self.cluster_id, ClusterState.FAILED)
        else:
            await withdrawals.delete_new_cluster(conn, self.cluster_id)

    def registration(self, accepted: Accepted) -> Registration:
        """The 202's data: the manifest with its token, or, on a replay, why it is not repeated."""
        if accepted.replayed:
            return Registration(
                operationId=accepted.operation_id,
                clusterId=accepted.cluster_id,
                clusterName=self.cluster_name,
                status=accepted.status,
                message="replayed: the manifest and its one-time token are shown only once; register again for a "
                "new token",
                manifest=None,
                installScript=None,
                registrationTokenExpiresAt=None,
            )
        manifest = manifest_for(self.ctx.settings, self.cluster_name, self.token, self.request.architecture)
        expires = timestamp(self.expires_at)
        return Registration(
            operationId=accepted.operation_id,
            clusterId=accepted.cluster_id,
            clusterName=self.cluster_name,
            status=accepted.status,
            message=f"apply the manifest in the cluster (or run installScript) before {expires}; the "
            "registration succeeds when the agent connects",
            manifest=manifest,
            installScript=install_script(manifest),
            registrationTokenExpiresAt=expires,
        )
