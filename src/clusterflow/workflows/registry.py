"""Which workflow runs each operation type, and how an operation row starts its workflow.

Shared by the API (first start) and the worker's reconciler (restart of a start that never
happened), so both start workflows the same way: workflow ID = operation ID, and an ID that was
ever used is refused, so a finished operation can never run twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from clusterflow.contracts.operations import OperationType
from clusterflow.workflows.catalog_refresh import CatalogRefreshWorkflow
from clusterflow.workflows.cloud_accounts import (
    AwsReverifyAccountsWorkflow,
    IssueCloudCredentialsWorkflow,
    IssueManagedKubeconfigWorkflow,
)
from clusterflow.workflows.cloud_connect import CloudConnectWorkflow
from clusterflow.workflows.delete import ClusterDeleteWorkflow
from clusterflow.workflows.deploy import ClusterDeployWorkflow
from clusterflow.workflows.federated_connect import FederatedCloudConnectWorkflow
from clusterflow.workflows.notification_dispatch import NotificationDispatchWorkflow
from clusterflow.workflows.register import (
    ClusterRegisterWorkflow,
    ClusterResyncWorkflow,
    ClusterUnregisterWorkflow,
    KubeconfigGenerateWorkflow,
)
from clusterflow.workflows.retention import HistoryRetentionWorkflow
from clusterflow.workflows.update import ClusterUpdateWorkflow
from clusterflow.workflows.update_run import UpdateRunWorkflow

WORKFLOW_TYPES: dict[str, str] = {
    OperationType.CLUSTER_DEPLOY: "ClusterDeploy",
    OperationType.CLUSTER_DELETE: "ClusterDelete",
    OperationType.CLUSTER_UPDATE: "ClusterUpdate",
    OperationType.CLOUD_CONNECT: "CloudConnect",
    OperationType.CLUSTER_REGISTER: "ClusterRegister",
    OperationType.CLUSTER_UNREGISTER: "ClusterUnregister",
    OperationType.CLUSTER_RESYNC: "ClusterResync",
    OperationType.KUBECONFIG_GENERATE: "KubeconfigGenerate",
    OperationType.UPDATE_RUN: "UpdateRun",
}

# CLOUD_CONNECT has one workflow per kind of connection (AWS role assumption, GCP/Azure
# federation), chosen by the route that starts it; the operation row records which one.
ALL_WORKFLOWS: list[type] = [
    ClusterDeployWorkflow,
    ClusterDeleteWorkflow,
    ClusterUpdateWorkflow,
    CloudConnectWorkflow,
    FederatedCloudConnectWorkflow,
    IssueCloudCredentialsWorkflow,
    IssueManagedKubeconfigWorkflow,
    AwsReverifyAccountsWorkflow,
    ClusterRegisterWorkflow,
    ClusterUnregisterWorkflow,
    ClusterResyncWorkflow,
    KubeconfigGenerateWorkflow,
    NotificationDispatchWorkflow,
    UpdateRunWorkflow,
    CatalogRefreshWorkflow,
    HistoryRetentionWorkflow,
]


async def start_operation_workflow(
    client: Client,
    task_queue: str,
    operation_id: str,
    workflow_type: str,
    workflow_input: dict[str, Any],
    rpc_timeout: timedelta | None = None,
) -> None:
    """Start the workflow; raises WorkflowAlreadyStartedError if this operation ever had one."""
    await client.start_workflow(
        workflow_type,
        workflow_input,
        id=operation_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        rpc_timeout=rpc_timeout,
    )
