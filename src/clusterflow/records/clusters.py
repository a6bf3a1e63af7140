"""Cluster rows: what the control plane believes each cluster is right now.

Functions take a connection (or pool) so the API can compose them with operation inserts in
one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clusterflow.records.db import Conn, Executor, Record
from clusterflow.records.errors import NameTaken

_COLUMNS = """id, organization_id, name, provider, provisioner_type, region, kubernetes_version,
    state, spec, control_plane, worker_nodes, tags, upgrade_status, rollback_status, created_at,
    updated_at, deleted_at,
    (SELECT o.id FROM operations o WHERE o.cluster_id = clusters.id
       AND o.status IN ('PENDING', 'AWAITING_APPROVAL', 'RUNNING', 'CANCELLING')
     ORDER BY o.id DESC LIMIT 1) AS active_operation_id"""


@dataclass(frozen=True)
class ClusterRow:
    """A cluster as the control plane records it (`_COLUMNS`), with its active operation."""

    id: str
    organization_id: str
    name: str
    provider: str
    provisioner_type: str
    region: str
    kubernetes_version: str | None
    state: str
    spec: dict[str, Any]
    """The stored cluster spec document; its shape is owned by the API's deploy schema."""
    control_plane: dict[str, Any] | None
    """The control-plane node group document (`contracts.cluster.NodeGroupSpec.to_document`)."""
    worker_nodes: list[dict[str, Any]]
    """Node group documents as deployed, then as updates left them (`NodeGroupSpec.from_document`
    reads them); kept as documents since keys a deploy left out must stay out of the view."""
    tags: dict[str, str]
    upgrade_status: dict[str, Any] | None
    """The last update's status document (`api.schemas.clusters.ClusterStatusDetail` fields)."""
    rollback_status: dict[str, Any] | None
    """The last rollback's status document (`ClusterStatusDetail` fields)."""
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    active_operation_id: str | None


def _row(record: Record) -> ClusterRow:
    return ClusterRow(
        id=record["id"],
        organization_id=record["organization_id"],
        name=record["name"],
        provider=record["provider"],
        provisioner_type=record["provisioner_type"],
        region=record["region"],
        kubernetes_version=record["kubernetes_version"],
        state=record["state"],
        spec=record["spec"],
        control_plane=record["control_plane"],
        worker_nodes=list(record["worker_nodes"] or []),
        tags=dict(record["tags"] or {}),
        upgrade_status=record["upgrade_status"],
        rollback_status=record["rollback_status"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        deleted_at=record["deleted_at"],
        active_operation_id=record["active_operation_id"],
    )


async def insert(
    conn: Conn,
    *,
    cluster_id: str,
    organization_id: str,
    name: str,
    provider: str,
    provisioner_type: str,
    region: str,
    kubernetes_version: str | None,
    state: str,
    spec: dict[str, Any],
    control_plane: dict[str, Any] | None,
    worker_nodes: list[dict[str, Any]],
    tags: dict[str, str] | None = None,
) -> None:
    """Insert a new cluster; a live cluster with the same name raises NameTaken."""
    # DO NOTHING rather than catching the unique violation: the caller's transaction stays
    # usable without a savepoint (two more round trips per insert).
    inserted = await conn.fetchval(
        """INSERT INTO clusters (id, organization_id, name, provider, provisioner_type, region,
               kubernetes_version, state, spec, control_plane, worker_nodes, tags)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT DO NOTHING RETURNING true""",
        cluster_id,
        organization_id,
        name,
        provider,
        provisioner_type,
        region,
        kubernetes_version,
        state,
        spec,
        control_plane,
        worker_nodes,
        tags or {},
    )
    if not inserted:
        existing = await conn.fetchval(
            "SELECT id FROM clusters WHERE organization_id = $1 AND name = $2 AND state <> 'DELETED'",
            organization_id,
            name,
        )
        raise NameTaken(name, existing)


async def get(db: Executor, organization_id: str, cluster_id: str) -> ClusterRow | None:
    """One cluster of the organization, by ID (deleted ones included: their history stays)."""
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM clusters WHERE organization_id = $1 AND id = $2",
        organization_id,
        cluster_id,
    )
    return _row(record) if record is not None else None


async def list_for_org(db: Executor, organization_id: str, provider: str | None = None) -> list[ClusterRow]:
    """The organization's clusters that are not deleted, newest first."""
    records = await db.fetch(
        f"""SELECT {_COLUMNS} FROM clusters
             WHERE organization_id = $1 AND state <> 'DELETED' AND ($2::text IS NULL OR provider = $2)
             ORDER BY id DESC""",
        organization_id,
        provider,
    )
    return [_row(r) for r in records]


async def lock(conn: Conn, organization_id: str, cluster_id: str) -> ClusterRow | None:
    """The cluster row, locked until the transaction ends: every enqueue on an existing cluster
    takes this lock first, so deciding which operations may run together is race-free."""
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM clusters WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        organization_id,
        cluster_id,
    )
    return _row(record) if record is not None else None


async def set_state(conn: Conn, cluster_id: str, state: str | None, fields: dict[str, Any] | None = None) -> None:
    """Move a cluster to `state` (None keeps it), merging reported fields: `kubernetesVersion`,
    `workerNodes`, `controlPlaneNode`, `tags`, `upgradeStatus`, `rollbackStatus`."""
    fields = fields or {}
    await conn.execute(
        """UPDATE clusters
              SET state = COALESCE($2, state),
                  kubernetes_version = COALESCE($3, kubernetes_version),
                  worker_nodes = COALESCE($4, worker_nodes),
                  control_plane = COALESCE($5, control_plane),
                  tags = COALESCE($6, tags),
                  upgrade_status = COALESCE($7, upgrade_status),
                  rollback_status = COALESCE($8, rollback_status),
                  updated_at = now(),
                  deleted_at = CASE WHEN $2 = 'DELETED' THEN now() ELSE deleted_at END
            WHERE id = $1""",
        cluster_id,
        state,
        fields.get("kubernetesVersion"),
        fields.get("workerNodes"),
        fields.get("controlPlaneNode"),
        fields.get("tags"),
        fields.get("upgradeStatus"),
        fields.get("rollbackStatus"),
    )


@dataclass(frozen=True)
class ClusterSummary:
    """Which cluster, where it runs and what it was deployed from: what a kubeconfig is issued for."""

    id: str
    name: str
    provider: str
    region: str
    state: str
    spec: Any
    """The stored cluster spec document (a dict as read through the JSON codecs)."""


async def summary(db: Executor, organization_id: str, cluster_id: str) -> ClusterSummary | None:
    """The organization's cluster by ID (deleted ones included), without its status columns."""
    row = await db.fetchrow(
        "SELECT id, name, provider, region, state, spec FROM clusters WHERE organization_id = $1 AND id = $2",
        organization_id,
        cluster_id,
    )
    if row is None:
        return None
    return ClusterSummary(
        id=row["id"],
        name=row["name"],
        provider=row["provider"],
        region=row["region"],
        state=row["state"],
        spec=row["spec"],
    )


async def live_id_by_name(db: Executor, organization_id: str, name: str) -> str | None:
    """ID of the organization's live (not deleted) cluster with this name."""
    value = await db.fetchval(
        "SELECT id FROM clusters WHERE organization_id = $1 AND name = $2 AND state <> 'DELETED'",
        organization_id,
        name,
    )
    return str(value) if value is not None else None


async def name_of(db: Executor, cluster_id: str) -> str | None:
    """The cluster's name, or None if there is no such cluster."""
    value = await db.fetchval("SELECT name FROM clusters WHERE id = $1", cluster_id)
    return str(value) if value is not None else None


async def organization_of(db: Executor, cluster_id: str) -> str | None:
    """The organization that owns the cluster, or None if there is no such cluster."""
    value = await db.fetchval("SELECT organization_id FROM clusters WHERE id = $1", cluster_id)
    return str(value) if value is not None else None
