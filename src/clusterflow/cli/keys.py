"""`clusterflow keys create|list|revoke`: API keys of the caller's organization.

A new key's secret is printed once, as the API shows it once; it is never stored by the CLI.
"""

from __future__ import annotations

import argparse
from typing import Any

from clusterflow.cli.client import Api, ExitCode, print_fields, print_json, print_table

COLUMNS = [
    ("ID", "id"),
    ("NAME", "name"),
    ("ROLE", "role"),
    ("KEY", "maskedKey"),
    ("STATUS", "status"),
    ("EXPIRES", "expiresAt"),
    ("LAST USED", "lastUsedAt"),
]


def _create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "role": args.role, "isPermanent": args.permanent}
    if args.duration:
        body["duration"] = args.duration
    with Api(args) as api:
        _, data = api.call("POST", "/v1/api-keys", body=body, idempotent_post=True)
    if args.output == "json":
        print_json(data)
    else:
        print_fields(data)
        print("\nStore the key now: it is not shown again.")
    return int(ExitCode.OK)


def _list(args: argparse.Namespace) -> int:
    with Api(args) as api:
        _, data = api.call("GET", "/v1/api-keys")
    if args.output == "json":
        print_json(data)
    else:
        found: Any = data.get("apiKeys", data.get("keys")) if isinstance(data, dict) else data
        rows: list[dict[str, Any]] = found if isinstance(found, list) else []
        print_table(rows, COLUMNS)
    return int(ExitCode.OK)


def _revoke(args: argparse.Namespace) -> int:
    with Api(args) as api:
        _, data = api.call("POST", f"/v1/api-keys/{args.key_id}/revoke", body={"reason": args.reason})
    if args.output == "json":
        print_json(data)
    else:
        print(f"key {args.key_id} revoked")
    return int(ExitCode.OK)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    verbs = keys.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("create", parents=[common], help="create a key (its secret is shown once)")
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=("viewer", "editor", "admin", "owner"), default="viewer")
    p.add_argument("--duration", help="lifetime, e.g. 30d or 12h")
    p.add_argument("--permanent", action="store_true", help="never expires")
    p.set_defaults(func=_create)

    p = verbs.add_parser("list", parents=[common], help="the organization's keys (masked)")
    p.set_defaults(func=_list)

    p = verbs.add_parser("revoke", parents=[common], help="revoke a key")
    p.add_argument("key_id")
    p.add_argument("--reason", help="kept for audit")
    p.set_defaults(func=_revoke)
