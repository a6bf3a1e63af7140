"""`clusterflow clusters list|get|deploy|update|label|delete`: the cluster resource from the shell.

Spec files are YAML (JSON is YAML too), the same documents the API takes (`K8sCluster` for
deploy, `K8sClusterUpdate` for update); `examples/` holds some. Mutations send a fresh
`Idempotency-Key`, answer with the operation ID, and with `--follow` stay until it ends.
`label` takes kubectl's arguments (`env=prod` sets, `team-` removes) and sends them as the
API's merge patch; `list -l` passes a Kubernetes label selector through unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from clusterflow.cli.client import Api, CliError, ExitCode, print_fields, print_json, print_table, unwrap
from clusterflow.cli.follow import follow_operation

COLUMNS = [
    ("ID", "clusterId"),
    ("NAME", "clusterName"),
    ("PROVIDER", "provider"),
    ("REGION", "region"),
    ("VERSION", "kubernetesVersion"),
    ("STATE", "state"),
    ("LABELS", "labelsText"),
    ("ACTIVE OPERATION", "activeOperationId"),
]


def labels_text(labels: dict[str, str] | None) -> str:
    """`k=v,k2=v2`, as kubectl shows labels (and as a selector would select them)."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def read_document(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        document = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as err:
        raise CliError(f"cannot read {path}: {err}", ExitCode.USAGE) from err
    if not isinstance(document, dict):
        raise CliError(f"{path} does not hold a document (a mapping)", ExitCode.USAGE)
    return document


def accepted_then_follow(api: Api, status: int, data: Any, args: argparse.Namespace) -> int:
    """Print a 202's operation (or a 200's result) and follow it when asked."""
    if status != 202 or not isinstance(data, dict) or "operationId" not in data:
        if args.output == "json":
            print_json(data)
        else:
            print_fields(data if isinstance(data, dict) else {"result": data})
        return int(ExitCode.OK)
    if args.output == "json":
        if args.follow:
            print(json.dumps(data), flush=True)  # the first line of the JSON-lines stream
        else:
            print_json(data)
    else:
        print(f"operation {data['operationId']} accepted for cluster {data.get('clusterId')} ({data.get('status')})")
    if args.follow:
        return follow_operation(api, data["operationId"], args.output)
    return int(ExitCode.OK)


def _list(args: argparse.Namespace) -> int:
    with Api(args) as api:
        _, data = api.call("GET", "/v1/clusters", params={"providerId": args.provider, "labelSelector": args.selector})
    if args.output == "json":
        print_json(data)
    else:
        print_table([{**c, "labelsText": labels_text(c.get("labels"))} for c in data], COLUMNS)
    return int(ExitCode.OK)


def _get(args: argparse.Namespace) -> int:
    with Api(args) as api:
        _, data = api.call("GET", f"/v1/clusters/{args.cluster_id}")
    if args.output == "json":
        print_json(data)
    else:
        print_fields({**data, "labels": labels_text(data.get("labels")) or None})
    return int(ExitCode.OK)


def label_changes(arguments: list[str]) -> dict[str, str | None]:
    """kubectl's `label` arguments as a merge patch's labels: `k=v` sets, `k-` removes."""
    changes: dict[str, str | None] = {}
    for argument in arguments:
        if "=" in argument:
            key, _, value = argument.partition("=")
            changes[key] = value
        elif argument.endswith("-") and len(argument) > 1:
            changes[argument[:-1]] = None
        else:
            raise CliError(f"{argument!r}: give key=value to set a label or key- to remove it", ExitCode.USAGE)
    return changes


def _label(args: argparse.Namespace) -> int:
    body = {"metadata": {"labels": label_changes(args.changes)}}
    with Api(args) as api:
        try:
            response = api.http.patch(
                f"/v1/clusters/{args.cluster_id}",
                content=json.dumps(body),
                headers={"Content-Type": "application/merge-patch+json"},
            )
        except httpx.HTTPError as err:
            raise CliError(f"cannot reach {api.http.base_url}: {err}") from err
        data = unwrap(response)
    if args.output == "json":
        print_json(data)
    else:
        print(f"cluster {data['clusterId']} labels: {labels_text(data.get('labels')) or '(none)'}")
    return int(ExitCode.OK)


def _deploy(args: argparse.Namespace) -> int:
    document = read_document(args.file)
    with Api(args) as api:
        params = {"dryRun": "true"} if args.dry_run else None
        status, data = api.call("POST", "/v1/clusters", params=params, body=document, idempotent_post=True)
        return accepted_then_follow(api, status, data, args)


def _update(args: argparse.Namespace) -> int:
    document = read_document(args.file)
    with Api(args) as api:
        status, data = api.call("PATCH", f"/v1/clusters/{args.cluster_id}", body=document)
        return accepted_then_follow(api, status, data, args)


def _delete(args: argparse.Namespace) -> int:
    with Api(args) as api:
        status, data = api.call("DELETE", f"/v1/clusters/{args.cluster_id}")
        return accepted_then_follow(api, status, data, args)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    clusters = sub.add_parser("clusters", help="list, inspect, deploy, update and delete clusters")
    verbs = clusters.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("list", parents=[common], help="list the organization's clusters")
    p.add_argument("--provider", help="only clusters of this provider")
    p.add_argument(
        "-l", "--selector", help="Kubernetes label selector, e.g. 'env=prod,team in (a,b)' (quote it for the shell)"
    )
    p.set_defaults(func=_list)

    p = verbs.add_parser("get", parents=[common], help="one cluster")
    p.add_argument("cluster_id")
    p.set_defaults(func=_get)

    p = verbs.add_parser("deploy", parents=[common], help="deploy a cluster from a K8sCluster YAML file")
    p.add_argument("-f", "--file", required=True, help="spec file (YAML or JSON; - for stdin)")
    p.add_argument("--dry-run", action="store_true", help="validate only")
    p.add_argument("--follow", action="store_true", help="watch the operation to its end")
    p.set_defaults(func=_deploy)

    p = verbs.add_parser("update", parents=[common], help="update a cluster from a K8sClusterUpdate YAML file")
    p.add_argument("cluster_id")
    p.add_argument("-f", "--file", required=True, help="update file (YAML or JSON; - for stdin)")
    p.add_argument("--follow", action="store_true", help="watch the operation to its end")
    p.set_defaults(func=_update)

    p = verbs.add_parser("label", parents=[common], help="set (key=value) or remove (key-) a cluster's labels")
    p.add_argument("cluster_id")
    p.add_argument("changes", nargs="+", metavar="key=value|key-")
    p.set_defaults(func=_label)

    p = verbs.add_parser("delete", parents=[common], help="delete a cluster and its cloud resources")
    p.add_argument("cluster_id")
    p.add_argument("--follow", action="store_true", help="watch the operation to its end")
    p.set_defaults(func=_delete)
