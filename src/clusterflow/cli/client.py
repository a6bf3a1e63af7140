"""What every REST command shares: where the API is, the key, the HTTP client, output, exit codes.

The URL and key come from flags, else `CLUSTERFLOW_URL` / `CLUSTERFLOW_API_KEY`, else the
`dev.env` that `clusterflow dev` writes (under `CLUSTERFLOW_STATE_DIR`, default `.clusterflow`),
so after `make run` every command works with no set-up. Prefer the environment to `--api-key`:
flags are visible to other users in the process list.

Exit codes are part of the interface (scripts branch on them): see `ExitCode`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from enum import IntEnum
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clusterflow import __version__
from clusterflow.devstack.bootstrap import read_env_file


class ExitCode(IntEnum):
    OK = 0  # the request succeeded; a followed operation SUCCEEDED
    FAILED = 1  # the followed operation FAILED
    USAGE = 2  # bad command line (argparse's own code)
    CANCELLED = 3
    REJECTED = 4
    API_ERROR = 5  # the API refused the request, or could not be reached


TERMINAL_EXIT = {
    "SUCCEEDED": ExitCode.OK,
    "FAILED": ExitCode.FAILED,
    "CANCELLED": ExitCode.CANCELLED,
    "REJECTED": ExitCode.REJECTED,
}


class CliError(Exception):
    """A failure to report on stderr, with the exit code to end with."""

    def __init__(self, message: str, code: ExitCode = ExitCode.API_ERROR) -> None:
        super().__init__(message)
        self.code = code


def common_options() -> argparse.ArgumentParser:
    """Options every REST command takes (a parent parser, so they go after the subcommand)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--url", help="API URL (default: $CLUSTERFLOW_URL, then .clusterflow/dev.env)")
    parent.add_argument("--api-key", help="API key (default: $CLUSTERFLOW_API_KEY, then .clusterflow/dev.env)")
    parent.add_argument("--output", "-o", choices=("text", "json"), default="text", help="output format")
    return parent


def resolve_target(args: argparse.Namespace) -> tuple[str, str]:
    env_file = Path(os.environ.get("CLUSTERFLOW_STATE_DIR", ".clusterflow")) / "dev.env"
    from_file = read_env_file(env_file)
    url = args.url or os.environ.get("CLUSTERFLOW_URL") or from_file.get("CLUSTERFLOW_URL")
    key = args.api_key or os.environ.get("CLUSTERFLOW_API_KEY") or from_file.get("CLUSTERFLOW_API_KEY")
    if not url:
        raise CliError("no API URL: pass --url, set CLUSTERFLOW_URL, or run `clusterflow dev`", ExitCode.USAGE)
    if not key:
        raise CliError("no API key: set CLUSTERFLOW_API_KEY (or pass --api-key)", ExitCode.USAGE)
    return url.rstrip("/"), key


class Api:
    """A thin client: the envelope's `data` on success, a `CliError` naming the code otherwise."""

    def __init__(self, args: argparse.Namespace) -> None:
        url, key = resolve_target(args)
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}", "User-Agent": f"clusterflow-cli/{__version__}"},
            timeout=httpx.Timeout(30.0, read=60.0),
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        idempotent_post: bool = False,
    ) -> tuple[int, Any]:
        headers = {"Idempotency-Key": str(uuid.uuid4())} if idempotent_post else {}
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, path, params=clean, json=body, headers=headers)
        except httpx.HTTPError as err:
            raise CliError(f"cannot reach {self.http.base_url}: {err}") from err
        return response.status_code, unwrap(response)


def unwrap(response: httpx.Response) -> Any:
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if response.is_success:
        return envelope.get("data") if isinstance(envelope, dict) else envelope
    if isinstance(envelope, dict) and isinstance(envelope.get("error"), dict):
        code = envelope["error"].get("code", "ERROR")
        message = envelope.get("message", "")
        details = envelope["error"].get("details")
        extra = f" {json.dumps(details)}" if details else ""
        raise CliError(f"{response.status_code} {code}: {message}{extra}")
    raise CliError(f"{response.status_code}: {response.text[:300]}")


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(_cell(row.get(field)) for _, field in columns))
    stdout_console().print(table)


def print_fields(value: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    console = stdout_console()
    for name, item in value.items():
        if name not in skip:
            console.print(f"[bold]{name}[/bold]: {_cell(item)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return escape(json.dumps(value))
    return escape(str(value))
