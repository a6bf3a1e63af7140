"""checkov, as the deploy and agent-manifest tests run it: from `CHECKOV` (set by `make test` and
`make deploy-check`) or the project's `.venv-checkov`, offline, answering its JSON reports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def checkov_binary() -> str | None:
    configured = os.environ.get("CHECKOV")
    if configured:
        return configured
    local = ROOT / ".venv-checkov" / "bin" / "checkov"
    return str(local) if local.exists() else None


def run_checkov(directory: Path, *frameworks: str) -> list[dict[str, Any]]:
    """One report per framework, with passed, failed and skipped checks listed."""
    result = subprocess.run(
        [checkov_binary() or "", "-d", str(directory), "--framework", *frameworks, "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"BC_SKIP_MAPPING": "TRUE"},
    )
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]
