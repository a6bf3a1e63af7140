"""`clusterflow runs create|list|get|pause|resume|skip|approve|cancel`: fleet update runs from
the shell.

`create -f run.yaml --follow` (and `get RUN --follow`) draws a bar per stage and per cluster
until the run ends, and exits as `ops watch` does: 0 SUCCEEDED, 1 FAILED, 3 CANCELLED,
4 REJECTED. It polls the run's record (`GET /v1/update-runs/{id}`): a run's state is its stages
and clusters, which the record holds whole; the operation's event stream
(`clusterflow ops watch RUN`) carries the same story as lines. On a terminal the bars redraw
in place; otherwise (a CI log) a line is printed whenever a stage or cluster changes.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from clusterflow.cli.client import (
    TERMINAL_EXIT,
    Api,
    CliError,
    ExitCode,
    print_fields,
    print_json,
    print_table,
    stdout_console,
)
from clusterflow.cli.clusters import read_document

COLUMNS = [
    ("RUN", "runId"),
    ("NAME", "name"),
    ("STATUS", "status"),
    ("VERSION", "targetVersion"),
    ("CREATED", "createdAt"),
    ("MESSAGE", "message"),
]
BAR_WIDTH = 20
POLL_SECONDS = 1.0


def bar(done: float, total: float, width: int = BAR_WIDTH) -> str:
    """`[######......]`: `done` of `total` as a text bar."""
    filled = 0 if total <= 0 else round(width * min(done, total) / total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _stage_done(stage: dict[str, Any]) -> tuple[int, int]:
    clusters = [c for g in stage["groups"] for c in g["clusters"]]
    finished = sum(c["status"] in ("SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED") for c in clusters)
    return finished, len(clusters)


def run_lines(run: dict[str, Any]) -> list[str]:
    """The run as lines: a header, then per stage a bar and per cluster a bar."""
    lines = [f"run {run['runId']} {run['name']}: {run['status']} — {run.get('message') or ''}".rstrip(" —")]
    for stage in run["stages"]:
        done, total = _stage_done(stage)
        gates = [f"gate {g['id']} {g['status']}" for g in stage["beforeGates"] + stage["afterGates"]]
        lines.append(
            f"stage {stage['name']:<12} {bar(done, total)} {done}/{total} {stage['status']}"
            + (f" ({', '.join(gates)})" if gates else "")
        )
        for group in stage["groups"]:
            for cluster in group["clusters"]:
                progress = 100 if cluster["status"] == "SUCCEEDED" else cluster.get("progressPercentage") or 0
                reason = f" {cluster['reason']}" if cluster.get("reason") else ""
                lines.append(
                    f"  {group['name']}/{cluster['clusterName']:<16} {bar(progress, 100)} {cluster['status']}{reason}"
                )
    return lines


def follow_run(api: Api, run_id: str, output: str) -> int:
    """Poll the run until its operation ends; the exit code of its status."""
    console = stdout_console()
    seen: set[str] = set()
    live = Live(console=console, auto_refresh=False) if console.is_terminal and output == "text" else None
    try:
        if live is not None:
            live.start()
        while True:
            _, run = api.call("GET", f"/v1/update-runs/{run_id}")
            if output == "json":
                print_json(run)
            elif live is not None:
                live.update(Group(*(Text(line) for line in run_lines(run))), refresh=True)
            else:
                for line in run_lines(run):
                    if line not in seen:
                        seen.add(line)
                        console.print(escape(line))
            if run["operationStatus"] in TERMINAL_EXIT:
                return int(TERMINAL_EXIT[run["operationStatus"]])
            time.sleep(POLL_SECONDS)
    finally:
        if live is not None:
            live.stop()


def _create(args: argparse.Namespace) -> int:
    document = read_document(args.file)
    with Api(args) as api:
        status, data = api.call(
            "POST",
            "/v1/update-runs",
            params={"dryRun": "true"} if args.dry_run else None,
            body=document,
            idempotent_post=True,
        )
        if args.dry_run or status != 202:
            if args.output == "json":
                print_json(data)
            else:
                _print_plan(data)
            return int(ExitCode.OK)
        if args.output == "json" and not args.follow:
            print_json(data)
        elif args.output == "text":
            print(f"update run {data['operationId']} accepted ({data.get('status')})")
            if data.get("approvalRequired"):
                token = data.get("approvalToken")
                print(
                    "the run waits for an owner's approval: clusterflow approve "
                    + data["operationId"]
                    + (f" (token {token})" if token else "")
                )
        if args.follow:
            return follow_run(api, data["operationId"], args.output)
    return int(ExitCode.OK)


def _print_plan(plan: dict[str, Any]) -> None:
    console = stdout_console()
    console.print(escape(plan["message"]))
    for stage in plan["stages"]:
        console.print(escape(f"stage {stage['order']} {stage['name']} (earliest start {stage['earliestStart']})"))
        for group in stage["groups"]:
            names = ", ".join(c["clusterName"] for c in group["clusters"])
            console.print(escape(f"  group {group['name']} (at most {group['maxConcurrency']} at once): {names}"))
    for skipped in plan["skipped"]:
        console.print(escape(f"skipped {skipped['clusterName']}: {skipped['reason']}"))


def _list(args: argparse.Namespace) -> int:
    with Api(args) as api:
        _, data = api.call("GET", "/v1/update-runs", params={"limit": args.limit})
    if args.output == "json":
        print_json(data)
    else:
        print_table(data["runs"], COLUMNS)
    return int(ExitCode.OK)


def _get(args: argparse.Namespace) -> int:
    with Api(args) as api:
        if args.follow:
            return follow_run(api, args.run_id, args.output)
        _, run = api.call("GET", f"/v1/update-runs/{args.run_id}")
    if args.output == "json":
        print_json(run)
    else:
        console = stdout_console()
        for line in run_lines(run):
            console.print(escape(line))
    return int(ExitCode.OK)


def _control(args: argparse.Namespace, path: str, body: dict[str, Any] | None = None) -> int:
    with Api(args) as api:
        _, data = api.call("POST", f"/v1/update-runs/{args.run_id}/{path}", body=body)
    if args.output == "json":
        print_json(data)
    else:
        print_fields(data)
    return int(ExitCode.OK)


def _pause(args: argparse.Namespace) -> int:
    return _control(args, "pause")


def _resume(args: argparse.Namespace) -> int:
    return _control(args, "resume")


def _cancel(args: argparse.Namespace) -> int:
    return _control(args, "cancel")


def _skip(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"stage": args.stage}
    if args.group:
        body["group"] = args.group
    return _control(args, "skip", body)


def _approve(args: argparse.Namespace) -> int:
    if not args.gate_id.startswith("g"):
        raise CliError(f"{args.gate_id} is not a gate ID (g1, g2...: see `clusterflow runs get`)", ExitCode.USAGE)
    body = {"comment": args.comment} if args.comment else {}
    return _control(args, f"gates/{args.gate_id}/approve", body)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="fleet update runs: create, follow, pause, resume, approve gates, cancel")
    verbs = runs.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("create", parents=[common], help="start an update run from a YAML file")
    p.add_argument("-f", "--file", required=True, help="run file (YAML or JSON; - for stdin)")
    p.add_argument("--dry-run", action="store_true", help="show the resolved plan; start nothing")
    p.add_argument("--follow", action="store_true", help="draw the run's progress until it ends")
    p.set_defaults(func=_create)

    p = verbs.add_parser("list", parents=[common], help="the organization's runs, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_list)

    p = verbs.add_parser("get", parents=[common], help="a run's stages, groups, gates and clusters")
    p.add_argument("run_id")
    p.add_argument("--follow", action="store_true", help="draw the run's progress until it ends")
    p.set_defaults(func=_get)

    for verb, func, text in (
        ("pause", _pause, "pause a run: running clusters finish, no new one starts"),
        ("resume", _resume, "resume a paused or halted run"),
        ("cancel", _cancel, "cancel a run: running updates roll back, updated clusters stay updated"),
    ):
        p = verbs.add_parser(verb, parents=[common], help=text)
        p.add_argument("run_id")
        p.set_defaults(func=func)

    p = verbs.add_parser("skip", parents=[common], help="skip a stage, or one group of it")
    p.add_argument("run_id")
    p.add_argument("--stage", required=True)
    p.add_argument("--group")
    p.set_defaults(func=_skip)

    p = verbs.add_parser("approve", parents=[common], help="approve a run's approval gate (owner role)")
    p.add_argument("run_id")
    p.add_argument("gate_id", help="the gate's ID (g1, g2...)")
    p.add_argument("--comment")
    p.set_defaults(func=_approve)
