"""First-run set-up of a stack: a default organization and an owner API key.

Keys are stored hashed, so a key cannot be shown twice: the dev stack keeps the one it made in
`.clusterflow/dev.env` and reuses it while it still authenticates, minting a new one otherwise.
"""

from __future__ import annotations

from pathlib import Path

from clusterflow.records.db import connect
from clusterflow.records.organizations import (
    authenticate,
    create_api_key,
    create_organization,
    find_organization_by_name,
)

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
        org_id = await find_organization_by_name(conn, DEFAULT_ORGANIZATION)
        if org_id is None:
            org_id = await create_organization(conn, DEFAULT_ORGANIZATION)
        _, key = await create_api_key(conn, org_id, "dev owner", "owner", created_by="clusterflow dev")
        return org_id, key, True
    finally:
        await conn.close()


def write_env_file(path: Path, url: str, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"CLUSTERFLOW_URL={url}\nCLUSTERFLOW_API_KEY={key}\n")
    path.chmod(0o600)
