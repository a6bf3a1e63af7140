"""Fleet update runs: the run's plan and state beside its operation row, and its clusters.

A run is an operation (type UPDATE_RUN); `update_runs` keeps what only a run has (the request,
the resolved plan, the snapshot its workflow writes). `update_run_clusters` holds each planned
cluster with the ID its CLUSTER_UPDATE operation will have and that operation's input, both
chosen at enqueue: `open_child` inserts the operation row under that ID once, whichever worker
asks and however often, so a worker killed around it never creates or starts an update twice.
Each child's status, start and end are its own operation row's (one truth, joined on read).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from clusterflow.contracts.operations import OperationStatus, OperationType
from clusterflow.contracts.update_runs import RunPlan, RunSnapshot, plan_from_json, snapshot_from_json
from clusterflow.records import operations
from clusterflow.records.db import Conn, Executor


@dataclass(frozen=True)
class PlannedChild:
    """One cluster of a run as planned at enqueue."""

    cluster_id: str
    cluster_name: str
    stage: str
    group: str
    position: int
    operation_id: str
    planned_version: str | None
    target_version: str
    update_input: dict[str, Any]
    """The CLUSTER_UPDATE workflow's input document (`contracts.operations.UpdateInput`, as JSON)."""


@dataclass(frozen=True)
class RunRow:
    operation: operations.OperationRow
    name: str
    request: dict[str, Any]
    """The request document as accepted (`api.schemas.update_runs.UpdateRunRequest`)."""
    plan: RunPlan
    snapshot: RunSnapshot | None
    status: str


@dataclass(frozen=True)
class RunChildRow:
    """A planned cluster with its operation's live status (None before it was opened)."""

    cluster_id: str
    cluster_name: str
    stage: str
    group: str
    position: int
    operation_id: str
    planned_version: str | None
    target_version: str
    status: str | None
    started_at: datetime | None
    completed_at: datetime | None
    message: str | None
    progress_percentage: int | None


@dataclass(frozen=True)
class RunsPage:
    rows: list[RunRow]
    next_page_token: str | None


async def insert(
    conn: Conn,
    *,
    run_id: str,
    organization_id: str,
    name: str,
    request: dict[str, Any],
    plan: dict[str, Any],
    children: list[PlannedChild],
) -> None:
    """Store the run's plan and its clusters (in the enqueue transaction, after its operation)."""
    await conn.execute(
        """INSERT INTO update_runs (operation_id, organization_id, name, request, plan)
           VALUES ($1, $2, $3, $4, $5)""",
        run_id,
        organization_id,
        name,
        request,
        plan,
    )
    await conn.executemany(
        """INSERT INTO update_run_clusters (run_id, cluster_id, cluster_name, stage, group_name, position,
               operation_id, planned_version, target_version, update_input)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        [
            (
                run_id,
                c.cluster_id,
                c.cluster_name,
                c.stage,
                c.group,
                c.position,
                c.operation_id,
                c.planned_version,
                c.target_version,
                c.update_input,
            )
            for c in children
        ],
    )


async def forget(conn: Conn, run_id: str) -> None:
    """Remove a run whose workflow provably never started (its operation row stays FAILED)."""
    await conn.execute("DELETE FROM update_run_clusters WHERE run_id = $1", run_id)
    await conn.execute("DELETE FROM update_runs WHERE operation_id = $1", run_id)


async def save_snapshot(db: Executor, run_id: str, snapshot: dict[str, Any], status: str) -> None:
    await db.execute(
        "UPDATE update_runs SET snapshot = $2, status = $3, updated_at = now() WHERE operation_id = $1",
        run_id,
        snapshot,
        status,
    )


def _run(record: Any, operation: operations.OperationRow) -> RunRow:
    snapshot = record["snapshot"]
    return RunRow(
        operation=operation,
        name=record["name"],
        request=record["request"],
        plan=plan_from_json(record["plan"]),
        snapshot=snapshot_from_json(snapshot) if snapshot else None,
        status=record["status"],
    )


async def get(db: Executor, organization_id: str, run_id: str) -> RunRow | None:
    operation = await operations.get(db, organization_id, run_id)
    if operation is None or operation.operation_type != OperationType.UPDATE_RUN:
        return None
    record = await db.fetchrow(
        """SELECT name, request, plan, snapshot, status FROM update_runs
            WHERE organization_id = $1 AND operation_id = $2""",
        organization_id,
        run_id,
    )
    return _run(record, operation) if record is not None else None


_RUN_ID = re.compile(r"op_[0-9A-Za-z]{1,64}")


def decode_page_token(token: str) -> str:
    """The run ID a page continues after; ValueError for a token this API did not issue."""
    try:
        value = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError("not a page token") from err
    if not _RUN_ID.fullmatch(value):
        raise ValueError("not a page token")
    return value


async def list_page(db: Executor, organization_id: str, *, limit: int, after_id: str | None) -> RunsPage:
    """The organization's runs, newest first (keyset on the time-ordered operation ID)."""
    records = await db.fetch(
        """SELECT operation_id, name, request, plan, snapshot, status FROM update_runs
            WHERE organization_id = $1 AND ($2::text IS NULL OR operation_id < $2)
            ORDER BY operation_id DESC LIMIT $3""",
        organization_id,
        after_id,
        limit + 1,
    )
    rows = []
    for record in records[:limit]:
        operation = await operations.get(db, organization_id, record["operation_id"])
        if operation is not None:
            rows.append(_run(record, operation))
    token = None
    if len(records) > limit:
        token = base64.urlsafe_b64encode(records[limit - 1]["operation_id"].encode()).decode().rstrip("=")
    return RunsPage(rows, token)


async def children(db: Executor, run_id: str) -> list[RunChildRow]:
    """The run's planned clusters in plan order, each with its operation's status (if opened)."""
    records = await db.fetch(
        """SELECT c.cluster_id, c.cluster_name, c.stage, c.group_name, c.position, c.operation_id,
                  c.planned_version, c.target_version, o.status, o.started_at, o.completed_at, o.message,
                  o.progress_percentage
             FROM update_run_clusters c LEFT JOIN operations o ON o.id = c.operation_id
            WHERE c.run_id = $1 ORDER BY c.position""",
        run_id,
    )
    return [
        RunChildRow(
            cluster_id=r["cluster_id"],
            cluster_name=r["cluster_name"],
            stage=r["stage"],
            group=r["group_name"],
            position=r["position"],
            operation_id=r["operation_id"],
            planned_version=r["planned_version"],
            target_version=r["target_version"],
            status=r["status"],
            started_at=r["started_at"],
            completed_at=r["completed_at"],
            message=r["message"],
            progress_percentage=r["progress_percentage"],
        )
        for r in records
    ]


@dataclass(frozen=True)
class ChildToOpen:
    """A planned cluster, locked for opening, with its operation's status if it exists."""

    child: PlannedChild
    organization_id: str
    requested_by: str | None
    existing_status: str | None


async def lock_child(conn: Conn, run_id: str, cluster_id: str) -> ChildToOpen | None:
    """The planned cluster, its row locked until the transaction ends (so two workers opening
    the same cluster queue here), with the status of its operation if already created."""
    record = await conn.fetchrow(
        """SELECT c.*, r.organization_id, o.requested_by AS run_requested_by,
                  (SELECT status FROM operations WHERE id = c.operation_id) AS existing_status
             FROM update_run_clusters c JOIN update_runs r ON r.operation_id = c.run_id
             JOIN operations o ON o.id = c.run_id
            WHERE c.run_id = $1 AND c.cluster_id = $2 FOR UPDATE OF c""",
        run_id,
        cluster_id,
    )
    if record is None:
        return None
    return ChildToOpen(
        child=PlannedChild(
            cluster_id=record["cluster_id"],
            cluster_name=record["cluster_name"],
            stage=record["stage"],
            group=record["group_name"],
            position=record["position"],
            operation_id=record["operation_id"],
            planned_version=record["planned_version"],
            target_version=record["target_version"],
            update_input=record["update_input"],
        ),
        organization_id=record["organization_id"],
        requested_by=record["run_requested_by"],
        existing_status=record["existing_status"],
    )


async def set_child_input(conn: Conn, run_id: str, cluster_id: str, update_input: dict[str, Any]) -> None:
    """Replace a planned cluster's update input (rebased on the cluster as recorded when its turn came)."""
    await conn.execute(
        "UPDATE update_run_clusters SET update_input = $3 WHERE run_id = $1 AND cluster_id = $2",
        run_id,
        cluster_id,
        update_input,
    )


async def cancel_unbegun(conn: Conn, run_id: str, cluster_ids: list[str], reason: str) -> list[str]:
    """End the run's child operations that are still PENDING (their workflow never took its
    first step) as CANCELLED; returns the operation IDs ended."""
    ids = await conn.fetch(
        """SELECT c.operation_id FROM update_run_clusters c JOIN operations o ON o.id = c.operation_id
            WHERE c.run_id = $1 AND c.cluster_id = ANY($2::text[]) AND o.status = 'PENDING'""",
        run_id,
        cluster_ids,
    )
    ended = []
    for record in ids:
        if await operations.finish(
            conn,
            record["operation_id"],
            OperationStatus.CANCELLED,
            reason,
            metadata={"cleanedUp": [], "leftBehind": []},
        ):
            ended.append(str(record["operation_id"]))
    return ended


# --- saved strategies -----------------------------------------------------------------------


@dataclass(frozen=True)
class StrategyRow:
    id: str
    name: str
    strategy: dict[str, Any]
    """The strategy document (`api.schemas.update_runs.StrategyDoc`, as JSON)."""
    created_by: str | None
    created_at: datetime
    updated_at: datetime


def _strategy(record: Any) -> StrategyRow:
    return StrategyRow(
        id=record["id"],
        name=record["name"],
        strategy=record["strategy"],
        created_by=record["created_by"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


_STRATEGY_COLUMNS = "id, name, strategy, created_by, created_at, updated_at"


async def insert_strategy(
    db: Executor, organization_id: str, strategy_id: str, name: str, strategy: dict[str, Any], created_by: str
) -> StrategyRow | None:
    """The saved strategy, or None when the organization already has one of that name."""
    record = await db.fetchrow(
        f"""INSERT INTO update_strategies (id, organization_id, name, strategy, created_by)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id, name) DO NOTHING
            RETURNING {_STRATEGY_COLUMNS}""",
        strategy_id,
        organization_id,
        name,
        strategy,
        created_by,
    )
    return _strategy(record) if record is not None else None


async def get_strategy(db: Executor, organization_id: str, strategy_id: str) -> StrategyRow | None:
    record = await db.fetchrow(
        f"SELECT {_STRATEGY_COLUMNS} FROM update_strategies WHERE organization_id = $1 AND id = $2",
        organization_id,
        strategy_id,
    )
    return _strategy(record) if record is not None else None


async def list_strategies(db: Executor, organization_id: str) -> list[StrategyRow]:
    records = await db.fetch(
        f"SELECT {_STRATEGY_COLUMNS} FROM update_strategies WHERE organization_id = $1 ORDER BY name LIMIT 1000",
        organization_id,
    )
    return [_strategy(r) for r in records]


async def replace_strategy(
    db: Executor, organization_id: str, strategy_id: str, name: str, strategy: dict[str, Any]
) -> StrategyRow | Literal[False] | None:
    """The strategy after the change; None if there is no such strategy, False if the name is
    another strategy's."""
    try:
        record = await db.fetchrow(
            f"""UPDATE update_strategies SET name = $3, strategy = $4, updated_at = now()
                 WHERE organization_id = $1 AND id = $2 RETURNING {_STRATEGY_COLUMNS}""",
            organization_id,
            strategy_id,
            name,
            strategy,
        )
    except asyncpg.UniqueViolationError:
        return False
    return _strategy(record) if record is not None else None


async def delete_strategy(db: Executor, organization_id: str, strategy_id: str) -> bool:
    deleted = await db.fetchval(
        "DELETE FROM update_strategies WHERE organization_id = $1 AND id = $2 RETURNING true",
        organization_id,
        strategy_id,
    )
    return bool(deleted)
