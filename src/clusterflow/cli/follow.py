"""Following an operation to its end over SSE: live bars per phase, events as they come.

The stream is `GET /v1/operations/{id}/events?follow=true&untilTerminal=true`. A dropped
connection (API restart, network blip, load balancer timeout) is resumed with `Last-Event-ID`,
which the server answers with exactly the events after it: the output has no gap and no
duplicate. The command ends with the operation's exit code (`client.TERMINAL_EXIT`).

Text output draws one bar for the operation (its progressPercentage) and one per phase (a
pulse while the phase runs, full when it completes), with every event printed above the bars.
`--output json` prints each event as one JSON line instead (for `jq` and scripts).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from clusterflow.cli.client import TERMINAL_EXIT, Api, CliError, unwrap

GIVE_UP_AFTER_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 5.0
_LEVEL_STYLE = {"ERROR": "red", "WARNING": "yellow", "INFO": "", "DEBUG": "dim"}


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[int, str, dict[str, Any]] | int]:
    """(id, event, data) per event; an int for a `retry:` line (the server's reconnect delay)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields and fields.get("id", "").isdigit():
                yield int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "retry" and value.isdigit():
                yield int(value)
            else:
                fields[name] = value


class TextView:
    def __init__(self, operation_id: str) -> None:
        self.console = Console(highlight=False, soft_wrap=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.overall = self.progress.add_task(f"[bold]{operation_id}[/bold]", total=100)
        self.phases: dict[str, TaskID] = {}

    def __enter__(self) -> TextView:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def note(self, message: str) -> None:
        self.progress.console.print(f"[yellow]{escape(message)}[/yellow]")

    def event(self, event: dict[str, Any]) -> None:
        phase, kind, message = event.get("phase"), event.get("kind"), str(event.get("message", ""))
        level = str(event.get("level", "INFO"))
        style = _LEVEL_STYLE.get(level, "")
        stamp = str(event.get("timestamp", ""))[11:23]
        where = f"{phase} " if phase and not message.startswith(str(phase)) else ""
        line = f"{stamp} {escape(where)}{escape(message)}"
        self.progress.console.print(f"[{style}]{line}[/{style}]" if style else line)
        if event.get("progressPercentage") is not None:
            self.progress.update(self.overall, completed=int(event["progressPercentage"]))
        if phase:
            task = self.phases.get(phase)
            if task is None:
                task = self.phases[phase] = self.progress.add_task(f"  {escape(phase)}", total=None)
            if kind == "phase" and message.endswith("completed"):
                self.progress.update(task, total=1, completed=1)
            elif level == "ERROR":
                self.progress.update(task, description=f"  [red]{escape(phase)}[/red]")
        if kind == "status":
            status = str(event.get("labels", {}).get("status", ""))
            if status in TERMINAL_EXIT:
                colour = "green" if status == "SUCCEEDED" else "red"
                self.progress.console.print(f"[bold {colour}]{status}[/bold {colour}]: {escape(message)}")


class JsonView:
    def __enter__(self) -> JsonView:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def note(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def event(self, event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


@dataclass
class _Cursor:
    last: int = 0
    """The last event shown: the resume point (`Last-Event-ID`), kept across failed connections."""
    retry_seconds: float = 1.0


def follow_operation(api: Api, operation_id: str, output: str) -> int:
    """Stream the operation's events until its terminal status; return its exit code."""
    view: TextView | JsonView = TextView(operation_id) if output == "text" else JsonView()
    cursor = _Cursor()
    disconnected_since: float | None = None
    with view:
        while True:
            shown_before, progressed = cursor.last, False
            try:
                status = _stream_once(api, operation_id, cursor, view)
                if status is not None:
                    return int(TERMINAL_EXIT[status])
                reason, progressed = "the stream ended before the operation did", True
            except httpx.TransportError as err:
                reason = f"connection lost ({type(err).__name__})"
            except _Retryable as err:
                reason = str(err)
            now = time.monotonic()
            if progressed or cursor.last > shown_before:
                disconnected_since = None  # only consecutive failures count toward giving up
            disconnected_since = disconnected_since or now
            if now - disconnected_since > GIVE_UP_AFTER_SECONDS:
                raise CliError(f"gave up following {operation_id}: {reason}")
            view.note(f"{reason}; resuming after event {cursor.last}")
            time.sleep(cursor.retry_seconds)
            cursor.retry_seconds = min(cursor.retry_seconds * 2, MAX_BACKOFF_SECONDS)


class _Retryable(Exception):
    pass


def _stream_once(api: Api, operation_id: str, cursor: _Cursor, view: TextView | JsonView) -> str | None:
    """One connection: the terminal status if it arrived, else None (reconnect and resume)."""
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(cursor.last)}
    params = {"follow": "true", "untilTerminal": "true"}
    with api.http.stream("GET", f"/v1/operations/{operation_id}/events", headers=headers, params=params) as response:
        if response.status_code in (429, 502, 503, 504):
            raise _Retryable(f"the API answered {response.status_code}")
        if not response.is_success:
            response.read()
            unwrap(response)  # raises CliError with the API's code and message
        for item in parse_sse(response.iter_lines()):
            if isinstance(item, int):
                cursor.retry_seconds = item / 1000  # the server's advice, reset on each connection
                continue
            sequence, _kind, event = item
            if sequence <= cursor.last:
                continue  # never shown twice, whatever a proxy replays
            cursor.last = sequence
            view.event(event)
            status = event.get("labels", {}).get("status") if event.get("kind") == "status" else None
            if status in TERMINAL_EXIT:
                return str(status)
    return None
