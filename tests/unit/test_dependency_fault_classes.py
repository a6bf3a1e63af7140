"""Which driver errors mean "the database is unavailable" (a 503 DATABASE_UNAVAILABLE with
Retry-After) and which are a bug (500): the shapes asyncpg raises while PostgreSQL shuts down,
restarts or is unreachable, taken from the full chaos run's API logs."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import pytest

from clusterflow.api.dependency_faults import Dependency, classify

OUTAGE_SHAPES = [
    # A GET /v1/clusters on a pooled connection whose server shut down mid-exchange (chaos run).
    asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.exceptions.ProtocolError("unexpected message while waiting for a response"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another server process"),
    asyncpg.exceptions.TargetServerAttributeNotMatched("None of the hosts match the target attribute requirement"),
    ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError(113, "No route to host"),
    TimeoutError(),
    socket.gaierror(-2, "Name or service not known"),
    asyncio.IncompleteReadError(b"", 5),
]


@pytest.mark.parametrize("err", OUTAGE_SHAPES, ids=lambda e: type(e).__name__)
def test_connection_loss_shapes_are_database_unavailable(err: BaseException) -> None:
    assert classify(err) is Dependency.DATABASE


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.exceptions.OutdatedSchemaCacheError("cached statement plan is invalid"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
        asyncpg.exceptions.DataError("invalid input"),
        FileNotFoundError(2, "No such file"),
        ValueError("bad"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_of_what_was_sent_are_not_an_outage(err: BaseException) -> None:
    assert classify(err) is None
