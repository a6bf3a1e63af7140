"""`clusterflow admin bootstrap`: the first organization and owner key of an installation.

Creating an organization through the API needs an owner key, so the first one comes from here,
run against `DATABASE_URL` (a one-off `docker run`, or the `clusterflow-bootstrap` Kubernetes
Job). It applies pending migrations, then creates the organization, its owner member and an
owner key in one transaction (`records.organizations.ensure_organization_owner_key`, which the
dev stack shares). It is safe to run again: an existing organization is left as it is and no key
is shown, since only its hash is stored. `--rotate` revokes the keys this command issued for the
organization and issues a new one.

The key is printed once on stdout, or with `--key-secret NAME` written to that Kubernetes
Secret instead, so it never reaches a Job's logs. The Secret is created only if absent, before
the database transaction commits: if it already exists (left from another database), nothing
is created and the command says why. `--rotate` replaces its content.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clusterflow.cli.client import CliError, ExitCode
from clusterflow.logs import configure_logging
from clusterflow.records.db import connect
from clusterflow.records.errors import ConnectionUnusable, DatabaseError
from clusterflow.records.migrate import migrate
from clusterflow.records.organizations import OwnerKeyIssue, ensure_organization_owner_key
from clusterflow.settings import get_settings

KEY_NAME = "bootstrap owner"
SOURCE = "bootstrap"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")  # as the API's OrganizationCreate.ownerEmail
LABELS = {"app.kubernetes.io/name": "clusterflow", "app.kubernetes.io/component": "owner-key"}
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KeySecret:
    """The Kubernetes Secret that receives the key: `CLUSTERFLOW_API_KEY` and
    `CLUSTERFLOW_ORGANIZATION_ID`, so a pod can take it with `envFrom`."""

    def __init__(self, name: str, namespace: str | None) -> None:
        from kubernetes import client, config

        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            api = client.ApiClient()
        else:
            api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
        self.core = client.CoreV1Api(api)
        self.name = name
        if namespace is None and SERVICE_ACCOUNT_NAMESPACE_FILE.exists():
            namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
        self.namespace = namespace or "default"

    def _body(self, issued: OwnerKeyIssue) -> Any:
        from kubernetes import client

        return client.V1Secret(
            metadata=client.V1ObjectMeta(name=self.name, labels=LABELS),
            type="Opaque",
            string_data={"CLUSTERFLOW_API_KEY": issued.key, "CLUSTERFLOW_ORGANIZATION_ID": issued.organization_id},
        )

    def create(self, issued: OwnerKeyIssue) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.create_namespaced_secret(self.namespace, self._body(issued))
        except ApiException as err:
            if err.status == 409:
                raise CliError(
                    f"Secret {self.namespace}/{self.name} already exists, but organization "
                    f"{issued.organization_id} was only now being created: it holds a key of another database. "
                    "Nothing was created. Delete the Secret and run again, or pass --rotate if the organization "
                    "should get a new key.",
                    ExitCode.FAILED,
                ) from err
            raise self._refused(err) from err

    def _refused(self, err: Any) -> CliError:
        return CliError(
            f"the Kubernetes API refused to write Secret {self.namespace}/{self.name} ({err.status} {err.reason}): "
            "nothing was created. The Job's service account needs create on Secrets and update on this one.",
            ExitCode.FAILED,
        )

    def replace(self, issued: OwnerKeyIssue) -> None:
        from kubernetes.client.rest import ApiException

        try:
            try:
                self.core.replace_namespaced_secret(self.name, self.namespace, self._body(issued))
            except ApiException as err:
                if err.status != 404:
                    raise
                self.core.create_namespaced_secret(self.namespace, self._body(issued))
        except ApiException as err:
            raise self._refused(err) from err


async def bootstrap(
    dsn: str, org: str, owner_email: str, *, rotate: bool, secret: KeySecret | None
) -> tuple[list[str], OwnerKeyIssue]:
    applied = await migrate(dsn)

    async def store(issued: OwnerKeyIssue) -> None:
        if secret is not None:
            await asyncio.to_thread(secret.replace if rotate else secret.create, issued)

    conn = await connect(dsn)
    try:
        issued = await ensure_organization_owner_key(
            conn,
            org,
            owner_email=owner_email,
            key_name=KEY_NAME,
            created_by="clusterflow admin bootstrap",
            source=SOURCE,
            when_exists="rotate" if rotate else "keep",
            store=store,
        )
    finally:
        await conn.close()
    return applied, issued


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if not 1 <= len(args.org.strip()) <= 100:
        raise CliError("--org: an organization name has 1 to 100 characters", ExitCode.USAGE)
    if not EMAIL.fullmatch(args.owner_email) or len(args.owner_email) > 254:
        raise CliError(f"--owner-email: {args.owner_email!r} is not an email address", ExitCode.USAGE)
    if not settings.database_url:
        raise CliError("DATABASE_URL is not set: bootstrap needs the installation's PostgreSQL", ExitCode.USAGE)
    secret = KeySecret(args.key_secret, args.key_secret_namespace) if args.key_secret else None
    try:
        applied, issued = asyncio.run(
            bootstrap(settings.database_url, args.org, args.owner_email, rotate=args.rotate, secret=secret)
        )
    except (OSError, DatabaseError, ConnectionUnusable) as err:
        where = urlsplit(settings.database_url)  # named by host and port: the DSN holds a password
        raise CliError(
            f"PostgreSQL at {where.hostname}:{where.port or 5432} failed: {type(err).__name__}: {err}. "
            "Nothing was created.",
            ExitCode.FAILED,
        ) from err
    if args.output == "json":
        print(
            json.dumps(
                {
                    "migrationsApplied": applied,
                    "organizationId": issued.organization_id,
                    "organizationCreated": issued.organization_created,
                    "keyId": issued.key_id,
                    "ownerKey": None if secret is not None else issued.key,
                    "keySecret": f"{secret.namespace}/{secret.name}" if secret is not None and issued.key else None,
                    "revokedKeyIds": list(issued.revoked_key_ids),
                }
            )
        )
        return int(ExitCode.OK)
    print(f"migrations applied: {', '.join(applied) or 'none pending'}")
    if issued.key is None:
        print(
            f"organization {args.org!r} ({issued.organization_id}) already exists: nothing created. "
            "Its owner key was shown when it was created; `--rotate` revokes it and issues a new one."
        )
        return int(ExitCode.OK)
    if issued.organization_created:
        print(f"created organization {args.org!r} ({issued.organization_id}) with owner {args.owner_email}")
    else:
        print(f"revoked {len(issued.revoked_key_ids)} bootstrap owner key(s): {', '.join(issued.revoked_key_ids)}")
    if secret is not None:
        print(f"owner key {issued.key_id} written to Secret {secret.namespace}/{secret.name} (CLUSTERFLOW_API_KEY)")
    else:
        print(f"owner key {issued.key_id} (shown once, store it now):\n{issued.key}")
    return int(ExitCode.OK)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser("admin", help="installation administration against DATABASE_URL (no API key needed)")
    commands = admin.add_subparsers(dest="admin_command", required=True)
    boot = commands.add_parser(
        "bootstrap",
        help="apply migrations, create the first organization and print its owner key once (safe to re-run)",
    )
    boot.add_argument("--org", required=True, help="organization name")
    boot.add_argument("--owner-email", required=True, help="email of the organization's first owner member")
    boot.add_argument(
        "--rotate", action="store_true", help="revoke the owner key(s) bootstrap issued and issue a new one"
    )
    boot.add_argument("--key-secret", metavar="NAME", help="write the key to this Kubernetes Secret, not stdout")
    boot.add_argument("--key-secret-namespace", metavar="NS", help="its namespace (default: the pod's own)")
    boot.add_argument("--output", choices=["text", "json"], default="text")
    boot.set_defaults(func=_cmd_bootstrap)
