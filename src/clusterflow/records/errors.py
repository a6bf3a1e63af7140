"""Domain errors raised by repositories, so callers never inspect database exceptions."""

from __future__ import annotations


class RecordError(Exception):
    """Base of every error the records layer raises on purpose."""


class NotFound(RecordError):
    pass


class ClusterBusy(RecordError):
    def __init__(self, cluster_id: str, active_operation_id: str | None) -> None:
        super().__init__(f"cluster {cluster_id} has operation {active_operation_id} in flight")
        self.cluster_id = cluster_id
        self.active_operation_id = active_operation_id


class NameTaken(RecordError):
    def __init__(self, name: str, cluster_id: str | None) -> None:
        super().__init__(f"a cluster named {name!r} already exists")
        self.name = name
        self.cluster_id = cluster_id


class IdempotencyKeyReused(RecordError):
    """The key was used before with a different request."""
