"""Which operations may run on a cluster at the same time, decided under the cluster's row lock.

One operation at a time per cluster, with one exception: a delete may pre-empt deploys that
are still running (it cancels them and tears down what they left). Everything else that finds
an active operation gets 409 naming it. The decision is made with the cluster row locked
(`SELECT ... FOR UPDATE`), so concurrent requests are serialized and exactly one wins; partial
unique indexes on `operations` back this up in the database itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterflow.api.errors import ApiError, not_found
from clusterflow.contracts.operations import ClusterState, OperationType
from clusterflow.records import clusters, operations
from clusterflow.records.clusters import ClusterRow
from clusterflow.records.db import Conn


@dataclass
class LockedCluster:
    row: ClusterRow
    preempts: list[str]


async def lock_cluster_for(conn: Conn, organization_id: str, cluster_id: str, operation_type: str) -> LockedCluster:
    row = await clusters.lock(conn, organization_id, cluster_id)
    if row is None:
        raise not_found("cluster", cluster_id)
    if row.state == ClusterState.DELETED:
        raise ApiError(
            409,
            "CLUSTER_DELETED",
            f"cluster {cluster_id} was deleted; its history stays readable",
            {"clusterId": cluster_id, "state": row.state},
        )
    active = await operations.active_for_cluster(conn, cluster_id)
    preempts: list[str] = []
    for op in active:
        deploy_to_preempt = (
            operation_type == OperationType.CLUSTER_DELETE and op.operation_type == OperationType.CLUSTER_DEPLOY
        )
        if not deploy_to_preempt:
            raise ApiError(
                409,
                "CLUSTER_BUSY",
                f"cluster {cluster_id} already has operation {op.id} ({op.operation_type}, {op.status}) "
                "in flight; wait for it or cancel it",
                {"clusterId": cluster_id, "activeOperationId": op.id},
            )
        preempts.append(op.id)
    return LockedCluster(row, preempts)
