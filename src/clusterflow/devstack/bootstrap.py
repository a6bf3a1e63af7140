"""First-run set-up of the dev stack: a default organization and an owner API key.

Keys are stored hashed, so a key cannot be shown twice: the dev stack keeps the one it made in
`.clusterflow/dev.env` and reuses it while it still authenticates, minting a new one otherwise
(without revoking others: several `make run` may share one external PostgreSQL). Creating the
organization and its key is `records.organizations.ensure_organization_owner_key`, the same
code `clusterflow admin bootstrap` runs for a real installation.
"""

from __future__ import annotations

from pathlib import Path

from clusterflow.records.db import connect
from clusterflow.records.organizations import authenticate, ensure_organization_owner_key

DEFAULT_ORGANIZATION = "default"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                name, _, value = line.partition("=")
                values[name.strip()] = value.strip()
    return values


async def ensure_owner_key(dsn: str, env_file: Path) -> tuple[str, str, bool]:
    """Return (organization ID, owner key, whether the key is new)."""
    conn = await connect(dsn)
    try:
        existing = read_env_file(env_file).get("CLUSTERFLOW_API_KEY")
        if existing:
            principal = await authenticate(conn, existing)
            if principal is not None and principal.role == "owner":
                return principal.organization_id, existing, False
        issued = await ensure_organization_owner_key(
            conn,
            DEFAULT_ORGANIZATION,
            owner_email=None,
            key_name="dev owner",
            created_by="clusterflow dev",
            source="dev",
            when_exists="issue",
        )
        assert issued.key is not None  # "issue" always issues one
        return issued.organization_id, issued.key, True
    finally:
        await conn.close()


def write_env_file(path: Path, url: str, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"CLUSTERFLOW_URL={url}\nCLUSTERFLOW_API_KEY={key}\n")
    path.chmod(0o600)
