"""What history retention retires, shared by the schedule, the workflow and its activities.

Four kinds of history grow without bound in a busy control plane: operation event logs, audit
rows, notification delivery logs and finished operations themselves. Each is retired by its own
activity (`activities/retention.py`), so one failing kind never holds the others back, and the
result says how much of each went. Fields are only ever added with defaults, so a run started by
an older worker still decodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

RETENTION_WORKFLOW: Final = "HistoryRetention"


class HistoryKind(StrEnum):
    EVENTS = "events"
    """Event logs of finished operations (the operation keeps its summary and says so)."""
    AUDIT = "audit"
    DELIVERIES = "deliveries"
    """Notification events once dispatched, and their delivery log."""
    OPERATIONS = "operations"
    """Finished operations with whatever is left of their log; never one another record needs."""


RETIRE_ACTIVITY: Final = {kind: f"retention.retire_{kind.value}" for kind in HistoryKind}


@dataclass(frozen=True)
class RetentionDays:
    """How long each kind of history is kept, in days."""

    events: int
    audit: int
    deliveries: int
    operations: int

    def of(self, kind: HistoryKind) -> int:
        return int(getattr(self, kind.value))


@dataclass(frozen=True)
class RetentionInput:
    """A scheduled run: the worker's settings give the defaults and the batch size."""


@dataclass(frozen=True)
class RetireInput:
    kind: HistoryKind


@dataclass(frozen=True)
class RetireResult:
    kind: HistoryKind
    rows: int = 0
    """Rows deleted (events, audit rows, deliveries and notification events, operations)."""
    operations: int = 0
    """Operations whose event log was retired (EVENTS) or that were deleted (OPERATIONS)."""
    batches: int = 0
    """Short transactions it took; none held locks on anything the API or workers write."""
    complete: bool = True
    """False when the run stopped at its batch budget; the next run continues."""


@dataclass(frozen=True)
class RetentionResult:
    results: tuple[RetireResult, ...] = ()
