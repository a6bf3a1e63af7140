"""`clusterflow cloud-accounts show aws|gcp|azure ID`: a cloud connection's status and what the
customer grants, before (or after) they run anything.

The permissions come from the connect answer itself (`permissions`), the list the template and
setup scripts are made from, so what the CLI shows is what the customer's cloud is asked for.
"""

from __future__ import annotations

import argparse
from typing import Any

from clusterflow.cli.client import Api, ExitCode, print_json, print_table, stdout_console

PERMISSION_COLUMNS = [
    ("EFFECT", "effect"),
    ("GRANT", "actions"),
    ("ON", "resources"),
    ("CONDITIONS", "conditions"),
    ("WHY", "why"),
]


def _joined(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list) and value else "-"


def _show(args: argparse.Namespace) -> int:
    with Api(args) as api:
        _, data = api.call("GET", f"/v1/cloud-accounts/{args.provider}/{args.account_id}")
    if args.output == "json":
        print_json(data)
        return int(ExitCode.OK)
    account: dict[str, Any] = data if isinstance(data, dict) else {}
    console = stdout_console()
    console.print(f"[bold]{args.provider} account {account.get('id')}[/bold]: {account.get('status')}")
    error = account.get("error") or {}
    for label, key in (("error", "message"), ("failing step", "step"), ("remedy", "remedy")):
        if error.get(key):
            console.print(f"[bold]{label}[/bold]: {error[key]}")
    listed = ("actions", "resources", "conditions")
    rows = [
        {column: _joined(p.get(column)) if column in listed else p.get(column) for _, column in PERMISSION_COLUMNS}
        for p in account.get("permissions") or []
    ]
    print_table(rows, PERMISSION_COLUMNS, title=f"What level {account.get('level')} grants")
    return int(ExitCode.OK)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    accounts = sub.add_parser("cloud-accounts", help="cloud connections and the permissions they grant")
    verbs = accounts.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("show", parents=[common], help="a connection's status and every permission it grants")
    p.add_argument("provider", choices=("aws", "gcp", "azure"))
    p.add_argument("account_id", help="the connect's ID (its operation ID)")
    p.set_defaults(func=_show)
