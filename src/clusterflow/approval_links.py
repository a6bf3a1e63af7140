"""Signed approve and reject links, carried by `operation.awaiting_approval` notifications.

The token in a link is a MAC, under the vault key, of the operation, the action and the end of
the approval window: nothing is stored, a worker signs the link when it delivers the
notification and any API process can check it. A link is bound to one operation and one action
and expires with the window; the workflow accepts it once (its `sha256` travels in the decision,
never the token), so a second use answers 409. The link is the reference API's
`POST /v1/organizations/{orgId}/clusters/{name}/approval?token=&action=`, which, as in the
reference, also needs an owner's key: a forwarded or leaked link decides nothing on its own.
Links are never logged: the access log omits query strings and the audit log omits `token`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from clusterflow import vault
from clusterflow.settings import Settings

PREFIX = "cfl_"
ACTIONS = ("APPROVE", "REJECT")


@dataclass(frozen=True)
class ApprovalLink:
    """A genuine link, as the API checked it."""

    operation_id: str
    action: str
    expires_at: datetime

    @property
    def sha256(self) -> str:
        """What identifies the link in the workflow (which keeps no secret)."""
        message = f"{self.operation_id}:{self.action}:{int(self.expires_at.timestamp())}"
        return hashlib.sha256(message.encode()).hexdigest()


def _mac(settings: Settings, operation_id: str, action: str, expires: int) -> str:
    return vault.Sealer.from_settings(settings).mac("approval-link", f"{operation_id}:{action}:{expires}")


def token(settings: Settings, operation_id: str, action: str, expires_at: datetime) -> str:
    """The token of a link deciding `action` on the operation until `expires_at`.

    Raises vault.VaultNotConfigured when no vault key is configured."""
    expires = int(expires_at.timestamp())
    return f"{PREFIX}{action.lower()}.{expires}.{_mac(settings, operation_id, action, expires)}"


def url(settings: Settings, organization_id: str, cluster_name: str, link_token: str, action: str) -> str:
    query = urlencode({"token": link_token, "action": action})
    cluster = quote(cluster_name, safe="")
    return f"{settings.api_url}/v1/organizations/{organization_id}/clusters/{cluster}/approval?{query}"


def check(settings: Settings, link_token: str, operation_id: str, action: str) -> ApprovalLink | None:
    """The link `link_token` is, if it is genuine for this operation and action; else None."""
    try:
        kind, expires_text, mac = link_token.removeprefix(PREFIX).split(".", 2)
        expires = int(expires_text)
        expires_at = datetime.fromtimestamp(expires, UTC)
        expected = _mac(settings, operation_id, action, expires)
    except (ValueError, OverflowError, OSError, vault.VaultNotConfigured):
        return None
    if kind.upper() != action or not hmac.compare_digest(expected, mac):
        return None
    return ApprovalLink(operation_id, action, expires_at)
