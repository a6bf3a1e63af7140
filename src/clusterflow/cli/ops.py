"""`clusterflow ops list|get|watch|cancel`, `clusterflow approve` and `reject`: operations from
the shell.

`approve OP` / `reject OP` decide with the caller's own (owner) key; `--token` is only for a
token handed over out of band. `ops list --awaiting-approval` lists what the caller may decide.

`watch` (and `--follow` on `cancel`) stays until the operation ends and exits with its code:
0 SUCCEEDED, 1 FAILED, 3 CANCELLED, 4 REJECTED (see `client.ExitCode`).
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from clusterflow.cli.client import Api, ExitCode, print_fields, print_json, print_table, stdout_console
from clusterflow.cli.follow import follow_operation

COLUMNS = [
    ("ID", "operationId"),
    ("TYPE", "operationType"),
    ("STATUS", "status"),
    ("PHASE", "currentPhase"),
    ("%", "progressPercentage"),
    ("CLUSTER", "clusterName"),
    ("STARTED", "startedAt"),
    ("MESSAGE", "message"),
]


APPROVAL_COLUMNS = [
    ("ID", "operationId"),
    ("TYPE", "operationType"),
    ("CLUSTER", "clusterName"),
    ("REQUESTED BY", "userId"),
    ("APPROVALS", "approvals"),
    ("RULE", "rule"),
    ("EXPIRES", "expiresAt"),
]


def _total(page: dict[str, object]) -> str:
    """`totalCount` as the API means it: `~551,000` when it is an estimate (`totalCountExact`)."""
    return str(page["totalCount"]) if page.get("totalCountExact", True) else f"~{page['totalCount']:,}"


def _awaiting(args: argparse.Namespace) -> int:
    with Api(args) as api:
        _, data = api.call("GET", "/v1/approvals", params={"limit": min(args.limit, 100)})
    if args.output == "json":
        print_json(data)
        return int(ExitCode.OK)
    rows = []
    for op in data["operations"]:
        approval = op.get("approval") or {}
        received = len([r for r in approval.get("received", []) if r.get("decision") == "APPROVE"])
        rows.append(
            op
            | {
                "approvals": f"{received}/{approval.get('required', 1)}",
                "rule": (approval.get("rule") or {}).get("name", ""),
                "expiresAt": approval.get("expiresAt"),
            }
        )
    print_table(rows, APPROVAL_COLUMNS, title=f"{_total(data)} operations awaiting your decision")
    return int(ExitCode.OK)


def _list(args: argparse.Namespace) -> int:
    if args.awaiting_approval:
        return _awaiting(args)
    params = {
        "clusterId": args.cluster,
        "status": args.status,
        "operationType": args.type,
        "limit": args.limit,
        "pageToken": args.page_token,
    }
    with Api(args) as api:
        _, data = api.call("GET", "/v1/operations", params=params)
    if args.output == "json":
        print_json(data)
    else:
        print_table(data["operations"], COLUMNS, title=f"{_total(data)} operations")
        if data.get("nextPageToken"):
            stdout_console().print(f"more: --page-token {data['nextPageToken']}")
    return int(ExitCode.OK)


def _get(args: argparse.Namespace) -> int:
    with Api(args) as api:
        _, data = api.call("GET", f"/v1/operations/{args.operation_id}")
    if args.output == "json":
        print_json(data)
        return int(ExitCode.OK)
    print_fields(data, skip=("recentEvents",))
    console = stdout_console()
    for event in data.get("recentEvents", []):
        where = f"{event['phase']} " if event.get("phase") else ""
        console.print(f"  #{event['sequence']} {event['timestamp']} {escape(where)}{escape(event['message'])}")
    return int(ExitCode.OK)


def _watch(args: argparse.Namespace) -> int:
    with Api(args) as api:
        return follow_operation(api, args.operation_id, args.output)


def _cancel(args: argparse.Namespace) -> int:
    with Api(args) as api:
        params = {"force": "true"} if args.force else None
        _, data = api.call("POST", f"/v1/operations/{args.operation_id}/cancel", params=params)
        if args.output == "json" and not args.follow:
            print_json(data)
        elif args.output != "json":
            print(f"operation {args.operation_id}: {data.get('status')} (forced: {data.get('forced')})")
        # Cancelling ends with the operation's own outcome: follow it to see the cleanup.
        return follow_operation(api, args.operation_id, args.output) if args.follow else int(ExitCode.OK)


def _decide(args: argparse.Namespace, action: str) -> int:
    body = {"action": action, "comment": args.comment}
    if args.token:
        body["token"] = args.token
    with Api(args) as api:
        _, data = api.call("POST", f"/v1/operations/{args.operation_id}/approval", body=body)
    if args.output == "json":
        print_json(data)
    else:
        print_fields(data if isinstance(data, dict) else {"result": data})
    return int(ExitCode.OK)


def _approve(args: argparse.Namespace) -> int:
    return _decide(args, "REJECT" if args.reject else "APPROVE")


def _reject(args: argparse.Namespace) -> int:
    return _decide(args, "REJECT")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    ops = sub.add_parser("ops", help="list, inspect, watch and cancel operations")
    verbs = ops.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("list", parents=[common], help="the organization's operations, newest first")
    p.add_argument("--cluster", help="only this cluster ID")
    p.add_argument("--status", help="only this status (e.g. RUNNING)")
    p.add_argument("--type", help="only this operation type (e.g. CLUSTER_DEPLOY)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--page-token")
    p.add_argument(
        "--awaiting-approval", action="store_true", help="only operations awaiting a decision this key may make"
    )
    p.set_defaults(func=_list)

    p = verbs.add_parser("get", parents=[common], help="one operation with its recent events")
    p.add_argument("operation_id")
    p.set_defaults(func=_get)

    p = verbs.add_parser("watch", parents=[common], help="follow an operation live to its end")
    p.add_argument("operation_id")
    p.set_defaults(func=_watch)

    p = verbs.add_parser("cancel", parents=[common], help="cancel a running operation")
    p.add_argument("operation_id")
    p.add_argument("--force", action="store_true", help="terminate after a graceful attempt")
    p.add_argument("--follow", action="store_true", help="watch the operation to its end")
    p.set_defaults(func=_cancel)

    p = sub.add_parser("approve", parents=[common], help="approve an operation awaiting approval (owner key)")
    p.add_argument("operation_id")
    p.add_argument("--token", help="an approval token handed over out of band (not needed with an owner key)")
    p.add_argument("--reject", action="store_true", help="reject instead of approve")
    p.add_argument("--comment", help="kept with the decision")
    p.set_defaults(func=_approve)

    p = sub.add_parser("reject", parents=[common], help="reject an operation awaiting approval (owner key)")
    p.add_argument("operation_id")
    p.add_argument("--token", help="an approval token handed over out of band (not needed with an owner key)")
    p.add_argument("--comment", help="kept with the decision")
    p.set_defaults(func=_reject)
