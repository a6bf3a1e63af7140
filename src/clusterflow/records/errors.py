"""Domain errors raised by repositories, and the driver's errors under names of their own, so
callers never inspect or import database exceptions."""

from __future__ import annotations

import asyncpg

# The driver's exceptions under names of their own, for the few callers that must tell a
# database that is away from one that refused what was sent; only `records/` names the driver.
DatabaseError = asyncpg.PostgresError
"""An error PostgreSQL reported: a refused statement, or the server ending the connection."""
ConnectionUnusable = asyncpg.InterfaceError
"""The connection cannot be used from this side (closed, released, or mid-way through another call)."""
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)
"""Errors that say the database cannot be reached now, as opposed to refusing what was sent."""
_BUSY_OR_STARTING: tuple[type[Exception], ...] = (asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


def database_unavailable(err: BaseException) -> bool:
    """Whether `err` says PostgreSQL cannot serve anyone right now (down, restarting, out of
    connections, the connection lost mid-query, a pool exhausted past its acquire timeout, a
    statement past its timeout), as opposed to refusing what was sent. Connecting raises the
    socket's own `OSError`s, and a bounded wait `TimeoutError` (itself an `OSError`); callers
    that also talk to other services over sockets classify those first."""
    if isinstance(err, (*DATABASE_UNREACHABLE, *_BUSY_OR_STARTING)):
        return True
    return isinstance(err, (ConnectionError, TimeoutError)) or type(err) is OSError


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
