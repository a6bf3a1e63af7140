"""CLOUD_CONNECT: record the account being connected, with the operation that verifies it.

AWS: the role the CloudFormation template creates (`workflows/cloud_connect.py`). GCP and
Azure: the federation the setup script creates (`workflows/federated_connect.py`); the account's
ID is the operation's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusterflow.api.commands.common import execution_policy
from clusterflow.api.enqueue import OperationCommand, OperationPlan
from clusterflow.api.errors import ApiError
from clusterflow.api.schemas.cloud_accounts import AwsCloudAccount, AwsCloudAccountRequest
from clusterflow.contracts.cloud_accounts import CloudConnectInput
from clusterflow.contracts.operations import OperationType
from clusterflow.records import cloud_accounts, federated_accounts, withdrawals
from clusterflow.records.db import Conn
from clusterflow.workflows.federated_connect import WORKFLOW_TYPE, AccountStatus, FederatedConnectInput
from clusterflow.workflows.registry import WORKFLOW_TYPES


@dataclass(frozen=True, kw_only=True)
class ConnectAws(OperationCommand):
    request: AwsCloudAccountRequest
    account_id: str
    region: str
    session_seconds: int

    async def prepare(self, conn: Conn) -> OperationPlan:
        org, account_id, body = self.ctx.organization_id, self.account_id, self.request
        existing = await cloud_accounts.lock_for_connect(conn, org, "aws", account_id)
        if existing is not None and existing.operation_status in {"PENDING", "RUNNING"}:
            raise ApiError(
                409,
                "CONNECT_IN_PROGRESS",
                f"AWS account {account_id} is being connected by operation {existing.operation_id}",
                {"accountId": account_id, "activeOperationId": existing.operation_id},
            )
        if existing is not None and existing.status == cloud_accounts.CONNECTED and not body.forceUpdate:
            raise ApiError(
                409,
                "ACCOUNT_ALREADY_CONNECTED",
                f"AWS account {account_id} is already connected; pass forceUpdate=true to reconnect it",
                {"accountId": account_id, "field": "forceUpdate"},
            )
        await cloud_accounts.external_id(conn, org, "aws")
        role_name = cloud_accounts.aws_role_name(org)
        await cloud_accounts.upsert_for_connect(
            conn,
            organization_id=org,
            provider="aws",
            account_id=account_id,
            cluster_name=body.clusterName,
            level=body.level,
            region=self.region,
            role_name=role_name,
            role_arn=f"arn:aws:iam::{account_id}:role/{role_name}",
            session_seconds=self.session_seconds,
            operation_id=self.operation_id,
        )
        return self._plan()

    async def abandon(self, conn: Conn) -> None:
        await withdrawals.release_cloud_account(conn, self.operation_id)

    def _plan(self) -> OperationPlan:
        settings, body = self.ctx.settings, self.request
        account_row_id = cloud_accounts.cloud_account_id(self.ctx.organization_id, "aws", self.account_id)
        return OperationPlan(
            operation_type=OperationType.CLOUD_CONNECT,
            workflow_type=WORKFLOW_TYPES[OperationType.CLOUD_CONNECT],
            workflow_input=CloudConnectInput(
                operation_id=self.operation_id,
                organization_id=self.ctx.organization_id,
                cloud_account_id=account_row_id,
                account_id=self.account_id,
                level=body.level,
                wait_seconds=settings.aws_connect_wait_seconds,
                check_initial_seconds=settings.aws_connect_check_initial_seconds,
                check_max_seconds=settings.aws_connect_check_max_seconds,
                policy=execution_policy(settings),
            ),
            cluster_id=None,
            cluster_name=body.clusterName,
            accepted_message="cloud connect accepted",
            metadata={
                "provider": "aws",
                "accountId": self.account_id,
                "cloudAccountId": account_row_id,
                "level": body.level,
            },
            response_data=AwsCloudAccount(
                id=self.operation_id, status="PENDING", accountId=self.account_id, level=body.level
            ).model_dump(mode="json"),
        )


@dataclass(frozen=True, kw_only=True)
class ConnectFederated(OperationCommand):
    """GCP or Azure: the account row (its ID is the operation's) with the generated script."""

    provider: str
    params: dict[str, Any]
    cluster_name: str
    level: str
    identity: dict[str, Any]
    script: str

    async def prepare(self, conn: Conn) -> OperationPlan:
        ctx = self.ctx
        await federated_accounts.insert(
            conn,
            account_id=self.operation_id,
            organization_id=ctx.organization_id,
            provider=self.provider,
            cluster_name=self.cluster_name,
            level=self.level,
            status=AccountStatus.PENDING,
            params=self.params,
            identity=self.identity,
            script=self.script,
        )
        return OperationPlan(
            operation_type=OperationType.CLOUD_CONNECT,
            workflow_type=WORKFLOW_TYPE,
            workflow_input=FederatedConnectInput(
                operation_id=self.operation_id,
                organization_id=ctx.organization_id,
                account_id=self.operation_id,
                provider=self.provider,
                timeout_seconds=ctx.settings.cloud_connect_timeout_seconds,
                poll_seconds=ctx.settings.cloud_connect_poll_seconds,
                policy=execution_policy(ctx.settings),
            ),
            cluster_id=None,
            cluster_name=self.cluster_name,
            accepted_message=f"{self.provider} cloud connect accepted",
            metadata={"provider": self.provider},
        )

    async def abandon(self, conn: Conn) -> None:
        await withdrawals.delete_federated_account(conn, self.operation_id)
