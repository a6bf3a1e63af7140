"""The agent channel's messages and close codes, shared by the agent and the API.

One JSON object per WebSocket text frame, each with a `type`. The agent authenticates the
upgrade request with `Authorization: Bearer <secret>`: the one-time registration token the
first time (the server answers `credential` with the long-lived credential that replaces it),
the credential afterwards. The server then sends `welcome` (with the heartbeat interval); the
agent answers `report` and keeps sending `heartbeat` (each carrying a fresh report).

Server -> agent: `credential`, `welcome`, `rotate` (a new credential; answer `rotated` once it
is stored), `kubeconfig` (issue a service-account token; answer `kubeconfig_result`),
`uninstall` (remove yourself; answer `uninstalled`), `error` (then the socket closes).
"""

from __future__ import annotations

PATH = "/v1/agent/connect"

CREDENTIAL = "credential"
WELCOME = "welcome"
ROTATE = "rotate"
KUBECONFIG = "kubeconfig"
UNINSTALL = "uninstall"
ERROR = "error"

REPORT = "report"
HEARTBEAT = "heartbeat"
ROTATED = "rotated"
KUBECONFIG_RESULT = "kubeconfig_result"
UNINSTALLED = "uninstalled"

CLOSE_UNAUTHORIZED = 4401
"""The presented token or credential is refused (unknown, used, expired): retrying cannot help."""
CLOSE_REVOKED = 4410
"""The agent was tombstoned: it must stop."""
CLOSE_PROTOCOL = 4400
"""A message the server could not understand."""

FATAL_CLOSE_CODES = frozenset({CLOSE_UNAUTHORIZED, CLOSE_REVOKED})
