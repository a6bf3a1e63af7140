"""Start-up checks: the API and the workers refuse settings a real installation cannot run on.

On a laptop (`make run`, the tests) everything binds to loopback and the defaults are right.
Once the API binds to a non-loopback address the process serves other machines, and some
defaults stop being safe: nothing would seal stored secrets, clouds would be told to trust an
http OIDC issuer (they refuse it, and tokens would travel in clear), and every URL handed out
(agent manifests, cloud callbacks, setup scripts, unsubscribe links) would point at 127.0.0.1.
Each of those fails late, far from its cause, in a customer's cluster or cloud; here the
process stops at once and names the setting to fix.

The checks are pure (`problems`, `loopback_warning`), so unit tests cover every rule; `enforce`
is the one call `api/app.py` and `worker/main.py` make.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from typing import NoReturn
from urllib.parse import urlsplit

from clusterflow.settings import Settings

log = logging.getLogger(__name__)

FEDERATED_PROVIDERS = ("gcp", "azure")
"""Providers whose cloud connect has the cloud trust our OIDC issuer (AWS trusts an account)."""


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _only_this_machine(host: str) -> bool:
    """A URL host nobody else can use: loopback, unspecified (0.0.0.0, ::) or none."""
    try:
        unspecified = ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        unspecified = False
    return not host or unspecified or is_loopback(host)


def serves_beyond_loopback(settings: Settings) -> bool:
    """Whether other machines reach this installation: the API binds to a non-loopback address
    (the image sets 0.0.0.0, for the workers too, which share its environment). The bind address
    decides, not the public URL: tests and local proxies name a public host on loopback binds."""
    return not is_loopback(settings.api_host)


def _oidc_issuer(settings: Settings) -> str:
    return settings.platform_oidc_issuer or settings.api_url


def _vault_problem(settings: Settings) -> str | None:
    if not settings.vault_keys:
        return (
            "CLUSTERFLOW_VAULT_KEYS is empty: kubeconfigs, stored cloud credentials and webhook secrets "
            "could not be sealed. Set it to a JSON map of key ID to base64 of 32 random bytes "
            '(e.g. {"k1": "<python -c \'import base64,os;print(base64.b64encode(os.urandom(32)).decode())\'>"}).'
        )
    for key_id, value in settings.vault_keys.items():
        try:
            key = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            return f"CLUSTERFLOW_VAULT_KEYS: key {key_id!r} is not base64 of 32 bytes."
    active = settings.vault_active_key_id
    if active is None and len(settings.vault_keys) > 1:
        return "CLUSTERFLOW_VAULT_ACTIVE_KEY_ID is unset while CLUSTERFLOW_VAULT_KEYS holds several keys: name one."
    if active is not None and active not in settings.vault_keys:
        return f"CLUSTERFLOW_VAULT_ACTIVE_KEY_ID {active!r} is not a key ID of CLUSTERFLOW_VAULT_KEYS."
    return None


def problems(settings: Settings) -> list[str]:
    """What makes these settings unsafe for an installation other machines reach; [] on loopback."""
    if not serves_beyond_loopback(settings):
        return []
    found = []
    vault = _vault_problem(settings)
    if vault:
        found.append(vault)
    public = settings.public_url
    if public is None:
        found.append(
            f"CLUSTERFLOW_PUBLIC_URL is unset while the API binds to {settings.api_host}: agent manifests, cloud "
            f"callbacks and the OIDC issuer would name {settings.api_url}. Set it to the URL clients reach the API "
            "at (e.g. https://clusterflow.example.com)."
        )
    elif _only_this_machine(_url_host(public)):
        found.append(
            f"CLUSTERFLOW_PUBLIC_URL {public} points at this machine only while the API binds to "
            f"{settings.api_host}: agents and clouds elsewhere could not reach it. "
            "Set the URL clients reach the API at."
        )
    federated = sorted(p for p in settings.enabled_providers if p in FEDERATED_PROVIDERS)
    issuer = _oidc_issuer(settings)
    if federated and urlsplit(issuer).scheme != "https":
        source = "CLUSTERFLOW_PLATFORM_OIDC_ISSUER" if settings.platform_oidc_issuer else "the public URL"
        found.append(
            f"the OIDC issuer {issuer} ({source}) is not https while {' and '.join(federated)} "
            f"{'are' if len(federated) > 1 else 'is'} enabled: clouds accept only an https issuer. "
            "Serve the API over https and set CLUSTERFLOW_PUBLIC_URL (or CLUSTERFLOW_PLATFORM_OIDC_ISSUER) "
            "to its https URL."
        )
    return found


def loopback_warning(settings: Settings) -> str | None:
    """On loopback with no public URL: say once what will point at 127.0.0.1."""
    if settings.public_url is not None or serves_beyond_loopback(settings):
        return None
    users = ["agent manifests", "cloud-connect callbacks and setup scripts", "notification links"]
    if not settings.platform_oidc_issuer:
        users.append("the OIDC issuer")
    return (
        f"CLUSTERFLOW_PUBLIC_URL is unset: {', '.join(users)} will point at {settings.api_url}, "
        "reachable from this machine only"
    )


def enforce(settings: Settings, process: str) -> None:
    """Log the loopback warning, or refuse to start (exit status 2) naming every unsafe setting."""
    found = problems(settings)
    if not found:
        warning = loopback_warning(settings)
        if warning:
            log.warning(warning)
        return
    _refuse(process, found)


def _refuse(process: str, found: list[str]) -> NoReturn:
    # Logged (to stderr, as text or JSON like every other line), then a plain exit: no traceback.
    log.critical(
        "clusterflow %s refuses to start: settings unsafe for an installation other machines reach:\n%s",
        process,
        "\n".join(f"  - {p}" for p in found),
    )
    raise SystemExit(2)
