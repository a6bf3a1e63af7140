"""The embedded PostgreSQL and Temporal dev server a bench runs against, in a scratch directory.

Every bench needs the same pair, started fresh and stopped whatever happens, so they share this
one context manager instead of each spelling out the start and the cleanup.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clusterflow.devstack.postgres import EmbeddedPostgres, free_port
from clusterflow.devstack.temporal import EmbeddedTemporal


@dataclass(frozen=True)
class Services:
    workdir: Path
    dsn: str
    temporal: str


@contextmanager
def embedded_services(prefix: str) -> Iterator[Services]:
    """PostgreSQL and Temporal in a temporary directory (removed on exit, with their data)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        postgres = EmbeddedPostgres(workdir / "pg", free_port())
        temporal = EmbeddedTemporal(workdir / "temporal.db", free_port(), None, log_file=workdir / "temporal.log")
        postgres.start()
        temporal.start()
        try:
            yield Services(workdir, postgres.dsn, temporal.address)
        finally:
            temporal.stop()
            postgres.stop()
