"""Approval decisions on the operation record, written by the workflow and, ahead of it, the API.

The workflow is the authority on a decision (its `decide` Update), and it records each decision
it accepts in an activity (`record_decision`). The API writes the same record so that a client
reads its decision as soon as it has the answer; the two writes are one, since the second finds
the decider already recorded and changes nothing.

The API's write is a `DecisionDraft`: its statements run in a transaction on their own
connection while the Update is in flight, and the transaction commits only when the workflow
accepted the decision and answered the status the draft computed; anything else rolls it back
and leaves the record to the workflow. So the approve path waits for one COMMIT after the
Update instead of a whole transaction, and a refused decision never touches the record. The
draft commits without waiting for its WAL flush (`synchronous_commit = off`): the decision is
already durable in the workflow's history, and the workflow writes it again if the database
loses the draft's commit in a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from clusterflow import metrics
from clusterflow.contracts.notifications import Topic
from clusterflow.contracts.operations import OperationStatus
from clusterflow.records import notifications
from clusterflow.records.db import Conn
from clusterflow.records.operations import append_event

_TOPIC_OF = {OperationStatus.RUNNING: Topic.OPERATION_STARTED, OperationStatus.REJECTED: Topic.OPERATION_REJECTED}
_VERB = {"APPROVE": "approved", "REJECT": "rejected", "EXPIRED": "rejected: the approval window expired"}


@dataclass(frozen=True)
class WrittenDecision:
    """What a decision changed: the operation's status after it, and what its metric needs."""

    status: str
    operation_type: str
    seconds_since_created: float

    def count(self) -> None:
        """Count the transition (once the write is committed) if the decision moved the status."""
        if self.status != OperationStatus.AWAITING_APPROVAL:
            terminal = self.status == OperationStatus.REJECTED
            metrics.operation_transition(
                self.operation_type, self.status, self.seconds_since_created if terminal else None
            )


async def write_decision(
    conn: Conn, operation_id: str, decision: str, decided_by: str, comment: str | None
) -> WrittenDecision | None:
    """Write a decision (APPROVE, REJECT or EXPIRED) on an operation awaiting one, in the
    caller's transaction.

    Every APPROVE and REJECT joins `approval_received` (who, when, comment) once per decider.
    An APPROVE that leaves approvals still needed keeps the operation AWAITING_APPROVAL; the one
    that completes them moves it to RUNNING; REJECT and EXPIRED end it REJECTED. None when
    nothing changed: the operation was not awaiting approval or this decider is already recorded.
    """
    current = await conn.fetchrow(
        """SELECT status, operation_type, approval_received, COALESCE(approval_required_count, 1) AS needed,
                  extract(epoch FROM now() - created_at)::float8 AS seconds, now() AS now
             FROM operations WHERE id = $1 FOR UPDATE""",
        operation_id,
    )
    if current is None or current["status"] != OperationStatus.AWAITING_APPROVAL:
        return None
    received: list[dict[str, Any]] = list(current["approval_received"] or [])
    if decision != "EXPIRED" and any(r.get("by") == decided_by for r in received):
        return None
    if decision != "EXPIRED":
        received.append({"by": decided_by, "at": current["now"].isoformat(), "decision": decision, "comment": comment})
    approvals = sum(1 for r in received if r.get("decision") == "APPROVE")
    if decision != "APPROVE":
        status = OperationStatus.REJECTED
    elif approvals >= current["needed"]:
        status = OperationStatus.RUNNING
    else:
        status = OperationStatus.AWAITING_APPROVAL
    if status == OperationStatus.AWAITING_APPROVAL:
        await conn.execute(
            "UPDATE operations SET approval_received = $2, last_update = now() WHERE id = $1",
            operation_id,
            received,
        )
    else:
        await conn.execute(
            """UPDATE operations SET status = $2, approval_decision = $3, approval_decided_by = $4,
                      approval_decided_at = now(), approval_comment = $5, approval_received = $6,
                      last_update = now(),
                      completed_at = CASE WHEN $2 = 'REJECTED' THEN now() ELSE NULL END
                WHERE id = $1""",
            operation_id,
            status,
            decision,
            decided_by,
            comment,
            received,
        )
    message = f"{_VERB[decision]} by {decided_by}" if decision != "EXPIRED" else _VERB[decision]
    if decision == "APPROVE" and status == OperationStatus.AWAITING_APPROVAL:
        message += f" ({approvals} of {current['needed']} approvals)"
    if comment:
        message += f": {comment}"
    await append_event(
        conn,
        operation_id,
        f"approval/{decision.lower()}" + (f"/{decided_by}" if decision != "EXPIRED" else ""),
        message,
        kind="status",
        level="INFO" if decision == "APPROVE" else "WARN",
        labels={"status": status, "decision": decision},
    )
    if status in _TOPIC_OF:
        await notifications.enqueue_for_operation(conn, operation_id, _TOPIC_OF[status])
    return WrittenDecision(str(status), str(current["operation_type"]), float(current["seconds"]))


async def record_decision(
    conn: Conn, operation_id: str, decision: str, decided_by: str, comment: str | None
) -> str | None:
    """Record a decision in its own transaction (the workflow's activity); returns the status
    after it, or None when nothing changed (see `write_decision`)."""
    async with conn.transaction():
        written = await write_decision(conn, operation_id, decision, decided_by, comment)
    if written is None:
        return None
    written.count()
    return written.status


class DecisionDraft:
    """The API's write of a decision, prepared while the workflow's Update is in flight.

    `async with DecisionDraft(conn, ...) as draft:` begins the transaction and starts the writes;
    `await draft.keep(status)` commits them if they computed `status` (what the workflow
    answered) and returns whether it did. Leaving the block without `keep` (a refused decision,
    an error) rolls them back.
    """

    def __init__(self, conn: Conn, operation_id: str, decision: str, decided_by: str, comment: str | None) -> None:
        self._conn = conn
        self._args = (operation_id, decision, decided_by, comment)
        self._transaction = conn.transaction()
        self._writing: asyncio.Task[WrittenDecision | None] | None = None
        self._done = False

    async def __aenter__(self) -> DecisionDraft:
        self._writing = asyncio.create_task(self._write())
        return self

    async def _write(self) -> WrittenDecision | None:
        await self._transaction.start()
        await self._conn.execute("SET LOCAL synchronous_commit TO off")
        return await write_decision(self._conn, *self._args)

    async def keep(self, status: str) -> bool:
        """Commit the draft if it computed `status`; otherwise roll it back. Raises what the
        database raised (the draft is then rolled back on leaving the block)."""
        assert self._writing is not None
        written = await self._writing
        self._done = True
        if written is None or written.status != status:
            await self._transaction.rollback()
            return False
        await self._transaction.commit()
        written.count()
        return True

    async def __aexit__(self, *exc: object) -> None:
        if self._done:
            return
        assert self._writing is not None
        # The writes are let finish (a cancelled query would leave the connection mid-exchange);
        # their failure is the workflow's to repair, as is a rollback on a connection already
        # lost, which the pool discards on release.
        with contextlib.suppress(Exception):
            await self._writing
        with contextlib.suppress(Exception):
            await self._transaction.rollback()
