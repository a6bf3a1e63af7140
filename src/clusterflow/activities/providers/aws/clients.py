"""Sessions, clients and the one way to call boto3: the seams a test (or another AWS) plugs into.

Every call runs with credentials from the organization's connected account (`connect.py`): each
phase attempt assumes the account's role with the organization's ExternalId, so nothing
long-lived is held and a revoked trust fails at once.

- Sessions come from an injected factory `(credentials | None, region) -> boto3.Session`, so a
  test can register botocore event hooks on the sessions it builds; endpoints come from
  settings (`aws_endpoint_url`), else boto3's own resolution, which honours the standard
  `AWS_ENDPOINT_URL`. No code path knows whether it runs under test.
- Boto3 is synchronous: each call (`aws_call`) runs in a thread of a pool of its own, so the
  worker's event loop keeps heartbeating (also while one call is slow), and its failures are
  classified (`errors.py`) on the way out.
- The creates that accept one carry a `clientRequestToken` (`request_token`) derived from
  operation ID, phase and resource, so a retried step is answered with the original.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from temporalio import activity

from clusterflow.activities.providers.aws.errors import classify, error_code

HEARTBEAT_SECONDS = 1.0
# boto3 blocks; its calls get threads of their own so hundreds of waiting phases do not queue
# behind the event loop's small default pool (sized to the CPU count).
_EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="aws")
TOKEN_NAMESPACE = uuid.UUID("6f1c3c59-7f5e-4f0a-9a57-8f3f6c2d4b11")


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime | None = None


SessionFactory = Callable[[AwsCredentials | None, str], boto3.Session]


# Service models and endpoint rules are read once per process and shared by every session:
# a session per phase attempt (fresh assumed credentials) would otherwise reparse them each time.
_LOADER = botocore.loaders.create_loader()


def new_session(region: str, **credentials: str) -> boto3.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    return boto3.Session(region_name=region, botocore_session=core, **credentials)


def default_session_factory(credentials: AwsCredentials | None, region: str) -> boto3.Session:
    """Platform credentials from boto3's default chain, or the given temporary ones."""
    if credentials is None:
        return new_session(region)
    return new_session(
        region,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )


_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=60)


class AwsClients:
    """Builds sessions and clients; the only place endpoints and credentials are chosen."""

    def __init__(self, factory: SessionFactory, endpoint_url: str | None, platform_region: str) -> None:
        self.factory = factory
        self.endpoint_url = endpoint_url
        self.platform_region = platform_region
        self._platform: dict[str, boto3.Session] = {}
        self._platform_clients: dict[tuple[str, str], Any] = {}

    def platform(self, region: str | None = None) -> boto3.Session:
        region = region or self.platform_region
        if region not in self._platform:
            self._platform[region] = self.factory(None, region)
        return self._platform[region]

    def platform_client(self, service: str, region: str | None = None) -> Any:
        """The platform's own clients, built once (clients are thread-safe; sessions are not)."""
        key = (service, region or self.platform_region)
        if key not in self._platform_clients:
            self._platform_clients[key] = self.client(self.platform(region), service)
        return self._platform_clients[key]

    def session(self, credentials: AwsCredentials, region: str) -> boto3.Session:
        return self.factory(credentials, region)

    def client(self, session: boto3.Session, service: str) -> Any:
        # endpoint_url=None lets boto3 resolve it (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>).
        return session.client(service, endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG)

    async def assume_role(
        self, role_arn: str, external_id: str, session_name: str, duration_seconds: int
    ) -> AwsCredentials:
        response = await aws_call(
            self.platform_client("sts"),
            "assume_role",
            RoleArn=role_arn,
            RoleSessionName=re.sub(r"[^\w+=,.@-]", "-", session_name)[:64],
            ExternalId=external_id,
            DurationSeconds=duration_seconds,
            role=role_arn,
        )
        creds = response["Credentials"]
        return AwsCredentials(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], creds["Expiration"]
        )


async def aws_call(
    client: Any,
    operation: str,
    *,
    missing: tuple[str, ...] = (),
    role: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run one boto3 call in a thread; None when it fails with one of the `missing` codes.

    Inside an activity it heartbeats while the call runs, so a slow call (first use of a
    service, a sluggish endpoint) is not mistaken for a lost worker.
    """
    loop = asyncio.get_running_loop()
    call = loop.run_in_executor(_EXECUTOR, partial(getattr(client, operation), **kwargs))
    try:
        while True:
            done, _ = await asyncio.wait({call}, timeout=HEARTBEAT_SECONDS)
            if done:
                return call.result()
            if activity.in_activity():
                activity.heartbeat(f"waiting for {operation}")
    except ClientError as err:
        if error_code(err) in missing:
            return None
        raise classify(err, operation, role, client.meta.region_name) from err
    except BotoCoreError as err:
        raise classify(err, operation, role) from err


def request_token(operation_id: str, phase: str, resource: str) -> str:
    """The same token for every attempt of one step, so AWS answers a repeat with the original."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, f"{operation_id}/{phase}/{resource}"))


@dataclass
class Account:
    """A phase's view of the connected account: clients built on assumed credentials."""

    clients: AwsClients
    session: boto3.Session
    account_id: str
    role_arn: str
    level: str
    _cache: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._cache:
            self._cache[service] = self.clients.client(self.session, service)
        return self._cache[service]

    async def call(self, client: Any, operation: str, *, missing: tuple[str, ...] = (), **kwargs: Any) -> Any:
        return await aws_call(client, operation, missing=missing, role=self.role_arn, **kwargs)
