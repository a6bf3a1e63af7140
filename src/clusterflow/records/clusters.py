"""Cluster rows: what the control plane believes each cluster is right now.

Functions take a connection (or pool) so the API can compose them with operation inserts in
one transaction.

Label selectors (`contracts.labels.Selector`) are translated to SQL here (`selector_sql`), so a
filtered list is one indexed query with its keyset page, never rows filtered in Python.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clusterflow.contracts.labels import Operator, Requirement, Selector
from clusterflow.records.db import Conn, Executor, Record
from clusterflow.records.errors import NameTaken

_COLUMNS = """id, organization_id, name, provider, provisioner_type, region, kubernetes_version,
    state, spec, control_plane, worker_nodes, tags, labels, upgrade_status, rollback_status, created_at,
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
    """The provisioner's tags on the cluster's cloud resources (GKE: resource labels)."""
    labels: dict[str, str]
    """clusterflow's own labels on the cluster (`contracts.labels`), never sent to a cloud."""
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
        labels=dict(record["labels"] or {}),
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
    labels: dict[str, str] | None = None,
) -> None:
    """Insert a new cluster; a live cluster with the same name raises NameTaken."""
    # DO NOTHING rather than catching the unique violation: the caller's transaction stays
    # usable without a savepoint (two more round trips per insert).
    inserted = await conn.fetchval(
        """INSERT INTO clusters (id, organization_id, name, provider, provisioner_type, region,
               kubernetes_version, state, spec, control_plane, worker_nodes, tags, labels)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
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
        labels or {},
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


def _requirement_sql(requirement: Requirement, args: list[Any]) -> str:
    """One requirement as a condition on `labels`, its values appended to `args` as parameters.

    Equality is containment (`labels @> '{"k": "v"}'`) and existence is `labels ? k`: both
    operators the GIN index answers. A set is an OR of containments (a BitmapOr of index scans).
    As in Kubernetes, `!=` and `notin` also select clusters without the key.
    """

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if requirement.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        exists = f"labels ? {param(requirement.key)}::text"
        return exists if requirement.operator is Operator.EXISTS else f"NOT ({exists})"
    contains = " OR ".join(f"labels @> {param({requirement.key: v})}::jsonb" for v in requirement.values)
    if requirement.operator in (Operator.EQUALS, Operator.IN):
        return f"({contains})"
    return f"NOT ({contains})"


def selector_sql(selector: Selector, args: list[Any]) -> str:
    """The selector as one SQL condition on `clusters.labels` (TRUE when it has no
    requirement); its parameters are appended to `args`, numbered after those already there."""
    if not selector.requirements:
        return "TRUE"
    return " AND ".join(_requirement_sql(r, args) for r in selector.requirements)


_CLUSTER_ID = re.compile(r"cl_[0-9A-Za-z]{1,64}")


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    """The cluster ID a page token continues after; ValueError for a token this API did not issue."""
    try:
        value = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
    except (binascii.Error, UnicodeDecodeError) as err:
        raise ValueError("not a page token") from err
    if not _CLUSTER_ID.fullmatch(value):
        raise ValueError("not a page token")
    return value


@dataclass(frozen=True)
class ClustersPage:
    rows: list[ClusterRow]
    next_page_token: str | None
    """Continues after the last row (keyset on the time-ordered ID); None on the last page."""


async def list_for_org(
    db: Executor,
    organization_id: str,
    provider: str | None = None,
    *,
    selector: Selector | None = None,
    limit: int | None = None,
    after_id: str | None = None,
) -> ClustersPage:
    """The organization's clusters that are not deleted and match the selector, newest first;
    `limit` rows at most after `after_id` (a keyset page), or all of them."""
    # Only the conditions given are in the SQL, so a cached generic plan still reads a deep
    # page as an index range (`id < $n`), not as a scan from the newest cluster.
    args: list[Any] = [organization_id]
    conditions = ["organization_id = $1", "state <> 'DELETED'"]
    for condition, value in (("provider = $", provider), ("id < $", after_id)):
        if value is not None:
            args.append(value)
            conditions.append(f"{condition}{len(args)}")
    conditions.append(selector_sql(selector or Selector(), args))
    args.append(None if limit is None else limit + 1)
    records = await db.fetch(
        f"""SELECT {_COLUMNS} FROM clusters WHERE {" AND ".join(conditions)}
             ORDER BY id DESC LIMIT ${len(args)}""",
        *args,
    )
    rows = [_row(r) for r in records]
    if limit is not None and len(rows) > limit:
        return ClustersPage(rows[:limit], encode_page_token(rows[limit - 1].id))
    return ClustersPage(rows, None)


async def lock(conn: Conn, organization_id: str, cluster_id: str) -> ClusterRow | None:
    """The cluster row, locked until the transaction ends: every enqueue on an existing cluster
    takes this lock first, so deciding which operations may run together is race-free."""
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM clusters WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        organization_id,
        cluster_id,
    )
    return _row(record) if record is not None else None


async def patch_labels(
    db: Executor, organization_id: str, cluster_id: str, changes: dict[str, str | None], *, max_labels: int
) -> dict[str, str] | None:
    """Merge `changes` into the cluster's labels (a None value removes the key) in one
    statement, so concurrent patches of different keys both land; the labels after the merge,
    or None when the organization has no such live cluster or the merge would leave more than
    `max_labels`."""
    set_keys = {k: v for k, v in changes.items() if v is not None}
    removed = [k for k, v in changes.items() if v is None]
    value = await db.fetchval(
        """UPDATE clusters SET labels = (labels - $4::text[]) || $3::jsonb, updated_at = now()
            WHERE organization_id = $1 AND id = $2 AND state <> 'DELETED'
              AND (SELECT count(*) FROM jsonb_object_keys((labels - $4::text[]) || $3::jsonb)) <= $5
        RETURNING labels""",
        organization_id,
        cluster_id,
        set_keys,
        removed,
        max_labels,
    )
    return None if value is None else {str(k): str(v) for k, v in value.items()}


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
