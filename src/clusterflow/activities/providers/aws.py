"""The `aws` provider: EKS clusters through boto3, in the customer's connected account.

Every call runs with credentials from the organization's connected account (see
`activities/aws_connect.py`): each phase attempt assumes the account's role with the
organization's ExternalId, so nothing long-lived is held and a revoked trust fails at once.

Shape, and why:

- Sessions come from an injected factory `(credentials | None, region) -> boto3.Session`, so a
  test can register botocore event hooks on the sessions it builds; endpoints come from
  settings (`aws_endpoint_url`), else boto3's own resolution, which honours the standard
  `AWS_ENDPOINT_URL`. No code path knows whether it runs under test.
- Every phase is idempotent. Names are deterministic (the EKS cluster is the cluster's name,
  roles are `cf-<name>-cluster|node`, network pieces carry the tag `clusterflow:cluster-id`),
  each create is preceded by a describe, and the creates that accept one carry a
  `clientRequestToken` derived from operation ID, phase and resource. A worker that dies
  mid-phase is replaced by a retry that finds what exists and waits for it.
- Waiting (cluster ACTIVE, node groups, add-ons, updates, deletions) is a describe poll inside
  the activity that heartbeats, so cancellation and worker loss are noticed within one
  heartbeat timeout.
- AWS errors are classified in one place (`classify`): throttling and 5xx retry; access
  denied, quota and invalid parameters are permanent and say what to do about them.
- Boto3 is synchronous: each call runs in a thread of a pool of its own, so the worker's event
  loop keeps heartbeating (also while one call is slow).

`provisioner.eks` (api/schemas/clusters.py `EksProvisioner`) fields used: `accountId` (which
connected account; default the organization's most recently verified one),
`kubernetesVersion`, `vpcId` + `subnets` (bring your own network: `{"<any name>": [{"id":
"subnet-..."}]}`; neither is ever deleted), `vpcCIDR` (of the VPC we create), `tags`.

Update phases read `PhaseInput.change`:

    {"kubernetesVersion": "1.32",                       # control plane (one minor step)
     "nodeGroups": [{"name": "workers", "changeType": "ADD" | "RESIZE" | "REMOVE" | "UPGRADE",
                     "minNode": 1, "maxNode": 5,          # ADD and RESIZE
                     "desiredNode": 2,                    # RESIZE, optional
                     "machineTypes": ["m5.large"],        # ADD
                     "kubernetesVersion": "1.32"}]}       # UPGRADE (default: the cluster's)
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg
import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from temporalio import activity

from clusterflow.activities.providers.phases import PhaseReporter, ProviderError, run_phase
from clusterflow.records import cloud_accounts
from clusterflow.workflows.cloud_contracts import CloudErrorCode
from clusterflow.workflows.contracts import ErrorCode, Phase, PhaseInput, PhaseResult

KUBERNETES_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33")
DEFAULT_KUBERNETES_VERSION = "1.31"
# Generic sizes of the portable document, as EC2 instance types; anything else is taken as an
# EC2 instance type and checked with DescribeInstanceTypes.
MACHINE_TYPES = {"small": "t3.medium", "medium": "m5.xlarge", "large": "m5.2xlarge", "xlarge": "m5.4xlarge"}
CLUSTER_TAG = "clusterflow:cluster-id"
VPC_QUOTA = ("vpc", "L-F678F1CE")  # VPCs per Region
DEFAULT_VPC_CIDR = "10.0.0.0/16"
CLUSTER_ROLE_POLICIES = ("arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",)
NODE_ROLE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
HEARTBEAT_SECONDS = 1.0
# boto3 blocks; its calls get threads of their own so hundreds of waiting phases do not queue
# behind the event loop's small default pool (sized to the CPU count).
_EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="aws")
TOKEN_NAMESPACE = uuid.UUID("6f1c3c59-7f5e-4f0a-9a57-8f3f6c2d4b11")

# --- credentials, sessions, clients ---------------------------------------------------------


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


# --- error classification -------------------------------------------------------------------

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
}
_UNAVAILABLE = {"InternalError", "InternalFailure", "ServiceUnavailable", "ServerException", "InternalServerError"}
_ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "AuthFailure",
    "NotAuthorized",
    "SignatureDoesNotMatch",
}
# Expired temporary credentials heal on retry: each attempt assumes the role afresh.
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
_CONFLICT = {"ResourceInUseException", "DependencyViolation", "IncorrectState", "ConcurrentModification"}


def _is_quota(code: str) -> bool:
    return (
        code.endswith("LimitExceeded")
        or code.endswith("LimitExceededException")
        or code
        in {
            "ServiceQuotaExceededException",
            "ResourceLimitExceeded",
            "QuotaExceededException",
            "InsufficientCapacity",
        }
    )


def _is_invalid(code: str) -> bool:
    return (
        code.startswith("Invalid")
        or code.startswith("Malformed")
        or code in {"ValidationError", "ValidationException", "UnsupportedAvailabilityZoneException", "Unsupported"}
    )


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def classify(err: Exception, operation: str, role: str | None = None, region: str | None = None) -> ProviderError:
    """The one mapping of AWS failures onto our codes, retryability and remedies."""
    if not isinstance(err, ClientError):
        return ProviderError(
            CloudErrorCode.CLOUD_UNAVAILABLE, f"{operation}: AWS could not be reached ({err})", retryable=True
        )
    code = error_code(err)
    message = str(err.response.get("Error", {}).get("Message", "")) or code
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    where = f" in {region}" if region else ""
    if code in _THROTTLING:
        return ProviderError(CloudErrorCode.CLOUD_THROTTLED, f"{operation} throttled by AWS: {message}", retryable=True)
    if code in _EXPIRED:
        return ProviderError(
            CloudErrorCode.CLOUD_ERROR, f"{operation}: credentials expired ({message})", retryable=True
        )
    if code in _ACCESS_DENIED:
        if role is None:
            remedy = "grant the platform's own AWS credentials this action (control-plane configuration)."
        else:
            remedy = (
                "reconnect the account with level 'manage' (POST /v1/cloud-accounts/aws with forceUpdate=true) "
                "and update the CloudFormation stack with the new template, or grant the role this action."
            )
        who = f"role {role}" if role else "the platform's credentials"
        return ProviderError(
            CloudErrorCode.CLOUD_ACCESS_DENIED,
            f"{operation} was denied for {who}: {message}. Remedy: {remedy}",
            retryable=False,
        )
    if _is_quota(code):
        return ProviderError(
            CloudErrorCode.CLOUD_QUOTA_EXCEEDED,
            f"{operation} exceeded an AWS quota{where} ({code}): {message}. Remedy: request an increase in "
            "Service Quotas for this account and region, or delete unused resources, then retry the operation.",
            retryable=False,
        )
    if _is_invalid(code):
        return ProviderError(
            CloudErrorCode.CLOUD_INVALID_PARAMETER,
            f"{operation} rejected a parameter ({code}): {message}. Remedy: correct the cluster document "
            "(provisioner.eks, machine types, versions) and submit it again.",
            retryable=False,
        )
    if code in _UNAVAILABLE or status >= 500:
        return ProviderError(
            CloudErrorCode.CLOUD_UNAVAILABLE, f"{operation}: AWS failed ({code or status}): {message}", retryable=True
        )
    if code in _CONFLICT:
        return ProviderError(CloudErrorCode.CLOUD_ERROR, f"{operation}: {code}: {message}", retryable=True)
    return ProviderError(
        CloudErrorCode.CLOUD_ERROR, f"{operation} failed ({code or status}): {message}", retryable=True
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


# --- kubeconfig ------------------------------------------------------------------------------

EKS_TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (a format prefix, not a secret)
_CLUSTER_ID_HEADER = "x-k8s-aws-id"


def eks_token(sts_client: Any, cluster_name: str, expires_seconds: int = 60) -> str:
    """A bearer token for an EKS API server, as `aws eks get-token` makes it.

    A presigned STS GetCallerIdentity URL whose signature covers the `x-k8s-aws-id` header
    (the cluster name), base64url without padding, prefixed `k8s-aws-v1.`. The API server's
    authenticator replays the URL to learn who the caller is.
    """

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[_CLUSTER_ID_HEADER] = cluster_name

    events = sts_client.meta.events
    events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    try:
        url = sts_client.generate_presigned_url(
            "get_caller_identity", Params={}, ExpiresIn=expires_seconds, HttpMethod="GET"
        )
    finally:
        events.unregister("before-sign.sts.GetCallerIdentity", add_cluster_header)
    return EKS_TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def eks_kubeconfig(cluster: dict[str, Any], token: str, user: str = "clusterflow") -> dict[str, Any]:
    """A kubeconfig for a described EKS cluster (`describe_cluster()["cluster"]`)."""
    name = cluster["name"]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": cluster["endpoint"],
                    "certificate-authority-data": cluster["certificateAuthority"]["data"],
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


# --- the provider ----------------------------------------------------------------------------


def eks_block(spec: dict[str, Any]) -> dict[str, Any]:
    return dict((spec.get("provisioner") or {}).get("eks") or {})


def node_groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    cluster_spec = spec.get("clusterSpec") or {}
    return list(((cluster_spec.get("dataPlane") or {}).get("nodeGroups")) or [])


def instance_types(group: dict[str, Any]) -> list[str]:
    return [MACHINE_TYPES.get(m, m) for m in group.get("machineTypes") or []]


def role_names(cluster_name: str) -> tuple[str, str]:
    return f"cf-{cluster_name}-cluster", f"cf-{cluster_name}-node"


_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


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


class AwsProvider:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        clients: AwsClients,
        *,
        poll_seconds: float,
        addons: list[str],
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.poll_seconds = poll_seconds
        self.addons = list(addons)

    # -- activities --

    @activity.defn(name="aws.deploy_phase")
    async def deploy_phase(self, inp: PhaseInput) -> PhaseResult:
        async def body(reporter: PhaseReporter) -> PhaseResult:
            account = await self._account(inp)
            return await self._deploy(inp, reporter, account)

        return await run_phase(self.pool, inp, body)

    @activity.defn(name="aws.delete_phase")
    async def delete_phase(self, inp: PhaseInput) -> PhaseResult:
        async def body(reporter: PhaseReporter) -> PhaseResult:
            account = await self._account(inp)
            return await self._delete(inp, reporter, account)

        return await run_phase(self.pool, inp, body)

    @activity.defn(name="aws.update_phase")
    async def update_phase(self, inp: PhaseInput) -> PhaseResult:
        async def body(reporter: PhaseReporter) -> PhaseResult:
            account = await self._account(inp)
            return await self._update(inp, reporter, account)

        return await run_phase(self.pool, inp, body)

    # -- account --

    async def _account(self, inp: PhaseInput) -> Account:
        return await self.account_for(inp.cluster_id, inp.spec, inp.region, f"cf-{inp.operation_id}")

    async def account_for(self, cluster_id: str, spec: dict[str, Any], region: str, session_name: str) -> Account:
        """The cluster's connected account, as assumed-role sessions in `region`."""
        organization_id = await self.pool.fetchval("SELECT organization_id FROM clusters WHERE id = $1", cluster_id)
        wanted = eks_block(spec).get("accountId")
        row = await cloud_accounts.find_usable(self.pool, organization_id, "aws", wanted) if organization_id else None
        if row is None:
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED,
                f"no connected AWS account{' ' + wanted if wanted else ''} for this organization. Remedy: connect "
                "it with POST /v1/cloud-accounts/aws, create the CloudFormation stack from the returned template, "
                "and wait until the connection is CONNECTED.",
                retryable=False,
            )
        external_id = await cloud_accounts.external_id(self.pool, organization_id, "aws")
        credentials = await self.clients.assume_role(
            row["role_arn"], external_id, session_name, min(int(row["session_seconds"]), 3600)
        )
        return Account(
            self.clients,
            self.clients.session(credentials, region),
            row["account_id"],
            row["role_arn"],
            row["level"],
        )

    # -- deploy --

    async def _deploy(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        if inp.phase == Phase.VALIDATE:
            return await self._validate(inp, reporter, account)
        if inp.phase == Phase.NETWORK:
            return await self._network(inp, reporter, account)
        if inp.phase == Phase.CONTROL_PLANE:
            return await self._control_plane(inp, reporter, account)
        if inp.phase == Phase.NODE_GROUPS:
            return await self._node_groups(inp, reporter, account)
        if inp.phase == Phase.ADDONS:
            return await self._addons(inp, reporter, account)
        if inp.phase == Phase.VERIFY:
            return await self._verify(inp, reporter, account)
        raise ProviderError(ErrorCode.INVALID_SPEC, f"unknown deploy phase {inp.phase}", retryable=False)

    def _version(self, spec: dict[str, Any]) -> str:
        return str(eks_block(spec).get("kubernetesVersion") or DEFAULT_KUBERNETES_VERSION)

    async def _validate(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        identity = await account.call(account.client("sts"), "get_caller_identity")
        if identity["Account"] != account.account_id:
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCESS_DENIED,
                f"the connected role answers for account {identity['Account']}, not {account.account_id}. "
                "Remedy: reconnect the account.",
                retryable=False,
            )
        await reporter.event("identity", f"acting in AWS account {account.account_id}", fraction=0.2)
        if account.level != "manage":
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCESS_LEVEL_TOO_LOW,
                f"AWS account {account.account_id} is connected with level {account.level!r}, which cannot create "
                "clusters. Remedy: reconnect it with level 'manage' (POST /v1/cloud-accounts/aws, forceUpdate=true).",
                retryable=False,
            )
        version = self._version(inp.spec)
        if version not in KUBERNETES_VERSIONS:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                f"kubernetesVersion {version} is not offered on EKS by this control plane "
                f"(supported: {', '.join(KUBERNETES_VERSIONS)}). Remedy: pick a supported version.",
                retryable=False,
            )
        wanted = sorted({t for group in node_groups(inp.spec) for t in instance_types(group)})
        ec2 = account.client("ec2")
        if wanted:
            await account.call(ec2, "describe_instance_types", InstanceTypes=wanted)
            await reporter.event("machine-types", f"instance types offered: {', '.join(wanted)}", fraction=0.5)
        block = eks_block(inp.spec)
        if block.get("vpcId"):
            await account.call(ec2, "describe_vpcs", VpcIds=[block["vpcId"]])
        else:
            await self._check_vpc_quota(inp, reporter, account, ec2)
        return PhaseResult(inp.phase, outputs={"accountId": account.account_id})

    async def _check_vpc_quota(self, inp: PhaseInput, reporter: PhaseReporter, account: Account, ec2: Any) -> None:
        if await self._our_vpc(inp, account, ec2) is not None:
            return  # a retry: the VPC this cluster needs exists already
        quotas = account.client("service-quotas")
        quota = await account.call(
            quotas,
            "get_service_quota",
            ServiceCode=VPC_QUOTA[0],
            QuotaCode=VPC_QUOTA[1],
            missing=("NoSuchResourceException",),
        )
        if quota is None:
            return
        limit = int(quota["Quota"]["Value"])
        used = len((await account.call(ec2, "describe_vpcs"))["Vpcs"])
        if used >= limit:
            raise ProviderError(
                CloudErrorCode.CLOUD_QUOTA_EXCEEDED,
                f"{inp.region} already has {used} of {limit} VPCs allowed. Remedy: request a higher 'VPCs per "
                "Region' quota, delete an unused VPC, or give provisioner.eks.vpcId and subnets.",
                retryable=False,
            )
        await reporter.event("quota", f"VPC quota: {used} of {limit} used", fraction=0.8)

    async def _our_vpc(self, inp: PhaseInput, account: Account, ec2: Any) -> str | None:
        found = await account.call(
            ec2, "describe_vpcs", Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}]
        )
        vpcs = found["Vpcs"]
        return str(vpcs[0]["VpcId"]) if vpcs else None

    def _tags(self, inp: PhaseInput, **extra: str) -> dict[str, str]:
        user = {str(k): str(v) for k, v in (eks_block(inp.spec).get("tags") or {}).items()}
        return user | {CLUSTER_TAG: inp.cluster_id, "clusterflow:cluster-name": inp.cluster_name} | extra

    def _tag_spec(self, inp: PhaseInput, resource: str, **extra: str) -> list[dict[str, Any]]:
        tags = self._tags(inp, **extra)
        return [{"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]

    async def _network(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        ec2 = account.client("ec2")
        block = eks_block(inp.spec)
        if block.get("vpcId"):
            subnet_ids = await self._given_subnets(inp, account, ec2)
            await reporter.event("given", f"using VPC {block['vpcId']} and subnets {', '.join(subnet_ids)}", fraction=1)
            return PhaseResult(inp.phase, outputs={"network": {"vpcId": block["vpcId"], "subnetIds": subnet_ids}})
        vpc_id = await self._our_vpc(inp, account, ec2)
        if vpc_id is None:
            created = await account.call(
                ec2,
                "create_vpc",
                CidrBlock=block.get("vpcCIDR") or DEFAULT_VPC_CIDR,
                TagSpecifications=self._tag_spec(inp, "vpc", Name=f"cf-{inp.cluster_name}"),
            )
            vpc_id = created["Vpc"]["VpcId"]
            await reporter.event("vpc/created", f"created VPC {vpc_id}", fraction=0.2)
        else:
            await reporter.event("vpc/found", f"found existing VPC {vpc_id}", fraction=0.2)
        await account.call(ec2, "modify_vpc_attribute", VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        gateway = await self._internet_gateway(inp, account, ec2, vpc_id)
        zones = [
            z["ZoneName"]
            for z in (await account.call(ec2, "describe_availability_zones"))["AvailabilityZones"]
            if z.get("State", "available") == "available"
        ][:2]
        if len(zones) < 2:
            raise ProviderError(
                CloudErrorCode.CLOUD_INVALID_PARAMETER,
                f"EKS needs two availability zones; {inp.region} offers {len(zones)}. Remedy: choose another region.",
                retryable=False,
            )
        cidr_base = (block.get("vpcCIDR") or DEFAULT_VPC_CIDR).split("/")[0].split(".")
        subnet_ids = []
        for index, zone in enumerate(zones):
            name = f"public-{index}"
            cidr = f"{cidr_base[0]}.{cidr_base[1]}.{index * 32}.0/19"
            subnet_ids.append(await self._subnet(inp, account, ec2, vpc_id, name, cidr, zone))
            await reporter.event(f"subnet/{name}", f"subnet {name} ready in {zone}", fraction=0.4 + 0.2 * index)
        await self._routes(inp, account, ec2, vpc_id, gateway, subnet_ids)
        return PhaseResult(
            inp.phase,
            resources=[f"vpc/{vpc_id}", *(f"subnet/{s}" for s in subnet_ids)],
            outputs={"network": {"vpcId": vpc_id, "subnetIds": subnet_ids}},
        )

    async def _given_subnets(self, inp: PhaseInput, account: Account, ec2: Any) -> list[str]:
        block = eks_block(inp.spec)
        ids = [s["id"] for group in (block.get("subnets") or {}).values() for s in group if s.get("id")]
        if len(ids) < 2:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                "provisioner.eks.vpcId needs at least two subnet IDs in provisioner.eks.subnets (two zones).",
                retryable=False,
            )
        found = (await account.call(ec2, "describe_subnets", SubnetIds=ids))["Subnets"]
        wrong = [s["SubnetId"] for s in found if s["VpcId"] != block["vpcId"]]
        if wrong:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                f"subnets {', '.join(wrong)} are not in VPC {block['vpcId']}. Remedy: list subnets of that VPC.",
                retryable=False,
            )
        return list(ids)

    async def _internet_gateway(self, inp: PhaseInput, account: Account, ec2: Any, vpc_id: str) -> str:
        found = await account.call(
            ec2, "describe_internet_gateways", Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}]
        )
        gateways = found["InternetGateways"]
        if gateways:
            gateway = gateways[0]
        else:
            gateway = (
                await account.call(
                    ec2, "create_internet_gateway", TagSpecifications=self._tag_spec(inp, "internet-gateway")
                )
            )["InternetGateway"]
        if not any(a.get("VpcId") == vpc_id for a in gateway.get("Attachments") or []):
            await account.call(
                ec2, "attach_internet_gateway", InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc_id
            )
        return str(gateway["InternetGatewayId"])

    async def _subnet(
        self, inp: PhaseInput, account: Account, ec2: Any, vpc_id: str, name: str, cidr: str, zone: str
    ) -> str:
        found = await account.call(
            ec2,
            "describe_subnets",
            Filters=[
                {"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]},
                {"Name": "tag:clusterflow:subnet", "Values": [name]},
            ],
        )
        if found["Subnets"]:
            subnet_id = str(found["Subnets"][0]["SubnetId"])
        else:
            subnet_id = await self._create_subnet(inp, account, ec2, vpc_id, name, cidr, zone)
        # Every time: a worker lost between create and modify must not leave it private.
        await account.call(ec2, "modify_subnet_attribute", SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})
        return subnet_id

    async def _create_subnet(
        self, inp: PhaseInput, account: Account, ec2: Any, vpc_id: str, name: str, cidr: str, zone: str
    ) -> str:
        created = await account.call(
            ec2,
            "create_subnet",
            VpcId=vpc_id,
            CidrBlock=cidr,
            AvailabilityZone=zone,
            TagSpecifications=self._tag_spec(
                inp, "subnet", **{"clusterflow:subnet": name, "kubernetes.io/role/elb": "1"}
            ),
        )
        return str(created["Subnet"]["SubnetId"])

    async def _routes(
        self, inp: PhaseInput, account: Account, ec2: Any, vpc_id: str, gateway: str, subnet_ids: list[str]
    ) -> None:
        found = await account.call(
            ec2, "describe_route_tables", Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}]
        )
        if found["RouteTables"]:
            table = found["RouteTables"][0]
        else:
            table = (
                await account.call(
                    ec2, "create_route_table", VpcId=vpc_id, TagSpecifications=self._tag_spec(inp, "route-table")
                )
            )["RouteTable"]
        table_id = table["RouteTableId"]
        if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in table.get("Routes") or []):
            await account.call(
                ec2, "create_route", RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway
            )
        associated = {a.get("SubnetId") for a in table.get("Associations") or []}
        for subnet_id in subnet_ids:
            if subnet_id not in associated:
                await account.call(ec2, "associate_route_table", RouteTableId=table_id, SubnetId=subnet_id)

    async def _subnet_ids(self, inp: PhaseInput, account: Account) -> list[str]:
        ec2 = account.client("ec2")
        if eks_block(inp.spec).get("vpcId"):
            return await self._given_subnets(inp, account, ec2)
        found = await account.call(
            ec2,
            "describe_subnets",
            Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}],
        )
        ids = sorted(s["SubnetId"] for s in found["Subnets"])
        if len(ids) < 2:
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED,
                f"the subnets of cluster {inp.cluster_name} are missing (found {len(ids)})",
                retryable=True,
            )
        return ids

    async def _ensure_role(
        self,
        inp: PhaseInput,
        reporter: PhaseReporter,
        account: Account,
        name: str,
        service: str,
        policies: tuple[str, ...],
    ) -> str:
        iam = account.client("iam")
        found = await account.call(iam, "get_role", RoleName=name, missing=("NoSuchEntity",))
        if found is None:
            created = await account.call(
                iam,
                "create_role",
                RoleName=name,
                AssumeRolePolicyDocument=_trust(service),
                Description=f"clusterflow: {service} role of cluster {inp.cluster_name}",
                Tags=[{"Key": k, "Value": v} for k, v in self._tags(inp).items()],
                missing=("EntityAlreadyExists",),
            )
            found = created or await account.call(iam, "get_role", RoleName=name)
            await reporter.event(f"role/{name}", f"created IAM role {name}")
        attached = await account.call(iam, "list_attached_role_policies", RoleName=name)
        have = {p["PolicyArn"] for p in attached["AttachedPolicies"]}
        for policy in policies:
            if policy not in have:
                await account.call(iam, "attach_role_policy", RoleName=name, PolicyArn=policy)
        return str(found["Role"]["Arn"])

    async def _wait(
        self,
        reporter: PhaseReporter,
        what: str,
        describe: Callable[[], Any],
        *,
        ready: set[str],
        failed: set[str],
        gone_ok: bool = False,
    ) -> dict[str, Any] | None:
        """Poll `describe` (returns the resource or None) until its status is in `ready`."""
        last = None
        while True:
            resource = await describe()
            if resource is None:
                if gone_ok:
                    return None
                raise ProviderError(CloudErrorCode.CLOUD_RESOURCE_FAILED, f"{what} disappeared", retryable=True)
            status = resource.get("status")
            if status in ready:
                return dict(resource)
            if status in failed:
                issues = (resource.get("health") or {}).get("issues") or resource.get("errors") or []
                detail = "; ".join(str(i.get("message") or i.get("errorMessage") or i) for i in issues) or status
                raise ProviderError(
                    CloudErrorCode.CLOUD_RESOURCE_FAILED,
                    f"{what} ended {status}: {detail}. Remedy: inspect it in the AWS console, fix the cause, "
                    "then delete the cluster or retry.",
                    retryable=False,
                )
            if status != last:
                await reporter.event(f"wait/{what}/{status}", f"{what} is {status}")
                last = status
            await reporter.heartbeat_while(self.poll_seconds, f"waiting for {what} ({status})")

    async def describe_cluster(self, account: Account, name: str) -> dict[str, Any] | None:
        return await self._describe_cluster(account, name)

    async def _describe_cluster(self, account: Account, name: str) -> dict[str, Any] | None:
        found = await account.call(
            account.client("eks"), "describe_cluster", name=name, missing=("ResourceNotFoundException",)
        )
        return None if found is None else dict(found["cluster"])

    async def _control_plane(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        cluster_role, _ = role_names(inp.cluster_name)
        role_arn = await self._ensure_role(
            inp, reporter, account, cluster_role, "eks.amazonaws.com", CLUSTER_ROLE_POLICIES
        )
        await reporter.event("role", f"cluster role {cluster_role} ready", fraction=0.1)
        eks = account.client("eks")
        existing = await self._describe_cluster(account, inp.cluster_name)
        if existing is not None:
            self._must_be_ours(inp, existing)
            await reporter.event("cluster/found", f"found existing EKS cluster {inp.cluster_name}", fraction=0.2)
        else:
            subnet_ids = await self._subnet_ids(inp, account)
            await account.call(
                eks,
                "create_cluster",
                name=inp.cluster_name,
                version=self._version(inp.spec),
                roleArn=role_arn,
                resourcesVpcConfig={"subnetIds": subnet_ids, "endpointPublicAccess": True},
                clientRequestToken=request_token(inp.operation_id, inp.phase, inp.cluster_name),
                tags=self._tags(inp),
            )
            await reporter.event("cluster/requested", f"requested EKS cluster {inp.cluster_name}", fraction=0.2)
        cluster = await self._wait(
            reporter,
            f"cluster {inp.cluster_name}",
            lambda: self._describe_cluster(account, inp.cluster_name),
            ready={"ACTIVE"},
            failed={"FAILED", "DELETING"},
        )
        assert cluster is not None
        return PhaseResult(
            inp.phase,
            resources=[f"eks-cluster/{inp.cluster_name}", f"iam-role/{cluster_role}"],
            outputs={"cluster": {"endpoint": cluster.get("endpoint"), "arn": cluster.get("arn")}},
        )

    @staticmethod
    def _must_be_ours(inp: PhaseInput, cluster: dict[str, Any]) -> None:
        if (cluster.get("tags") or {}).get(CLUSTER_TAG) != inp.cluster_id:
            raise ProviderError(
                CloudErrorCode.CLOUD_INVALID_PARAMETER,
                f"an EKS cluster named {inp.cluster_name} already exists in this account and region and was not "
                "created for this cluster. Remedy: choose another clusterName or region.",
                retryable=False,
            )

    async def _describe_nodegroup(self, account: Account, cluster: str, name: str) -> dict[str, Any] | None:
        found = await account.call(
            account.client("eks"),
            "describe_nodegroup",
            clusterName=cluster,
            nodegroupName=name,
            missing=("ResourceNotFoundException",),
        )
        return None if found is None else dict(found["nodegroup"])

    async def _create_nodegroup(
        self, inp: PhaseInput, account: Account, group: dict[str, Any], node_role: str, subnet_ids: list[str]
    ) -> bool:
        if await self._describe_nodegroup(account, inp.cluster_name, group["name"]) is not None:
            return False
        minimum, maximum = int(group.get("minNode", 1)), int(group.get("maxNode", 1))
        await account.call(
            account.client("eks"),
            "create_nodegroup",
            clusterName=inp.cluster_name,
            nodegroupName=group["name"],
            scalingConfig={"minSize": minimum, "maxSize": maximum, "desiredSize": minimum},
            subnets=subnet_ids,
            instanceTypes=instance_types(group) or [MACHINE_TYPES["medium"]],
            nodeRole=node_role,
            labels={str(k): str(v) for k, v in (group.get("labels") or {}).items()},
            taints=[
                {"key": t["key"], "value": t.get("value") or "", "effect": _TAINT_EFFECTS[t["effect"]]}
                for t in group.get("taints") or []
            ],
            capacityType="SPOT" if group.get("instanceType") == "spot" else "ON_DEMAND",
            clientRequestToken=request_token(inp.operation_id, inp.phase, group["name"]),
            tags=self._tags(inp),
        )
        return True

    async def _node_groups(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        _, node_role_name = role_names(inp.cluster_name)
        node_role = await self._ensure_role(
            inp, reporter, account, node_role_name, "ec2.amazonaws.com", NODE_ROLE_POLICIES
        )
        subnet_ids = await self._subnet_ids(inp, account)
        groups = node_groups(inp.spec)
        for group in groups:
            created = await self._create_nodegroup(inp, account, group, node_role, subnet_ids)
            verb = "requested" if created else "found existing"
            await reporter.event(f"nodegroup/{group['name']}/{verb}", f"{verb} node group {group['name']}")
        for index, group in enumerate(groups):
            await self._wait(
                reporter,
                f"node group {group['name']}",
                partial(self._describe_nodegroup, account, inp.cluster_name, group["name"]),
                ready={"ACTIVE"},
                failed={"CREATE_FAILED", "DEGRADED", "DELETING", "DELETE_FAILED"},
            )
            await reporter.event(
                f"nodegroup/{group['name']}/active",
                f"node group {group['name']} ACTIVE",
                fraction=(index + 1) / len(groups),
            )
        return PhaseResult(inp.phase, resources=[f"eks-nodegroup/{g['name']}" for g in groups])

    async def _describe_addon(self, account: Account, cluster: str, name: str) -> dict[str, Any] | None:
        found = await account.call(
            account.client("eks"),
            "describe_addon",
            clusterName=cluster,
            addonName=name,
            missing=("ResourceNotFoundException",),
        )
        return None if found is None else dict(found["addon"])

    async def _addons(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        eks = account.client("eks")
        for name in self.addons:
            if await self._describe_addon(account, inp.cluster_name, name) is None:
                await account.call(
                    eks,
                    "create_addon",
                    clusterName=inp.cluster_name,
                    addonName=name,
                    resolveConflicts="OVERWRITE",
                    clientRequestToken=request_token(inp.operation_id, inp.phase, name),
                    tags=self._tags(inp),
                )
                await reporter.event(f"addon/{name}", f"requested add-on {name}")
        for index, name in enumerate(self.addons):
            await self._wait(
                reporter,
                f"add-on {name}",
                partial(self._describe_addon, account, inp.cluster_name, name),
                ready={"ACTIVE"},
                failed={"CREATE_FAILED", "DEGRADED", "DELETE_FAILED"},
            )
            await reporter.event(
                f"addon/{name}/active", f"add-on {name} ACTIVE", fraction=(index + 1) / len(self.addons)
            )
        return PhaseResult(inp.phase, resources=[f"eks-addon/{name}" for name in self.addons])

    async def _verify(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        cluster = await self._describe_cluster(account, inp.cluster_name)
        if cluster is None or cluster.get("status") != "ACTIVE":
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED,
                f"EKS cluster {inp.cluster_name} is {cluster.get('status') if cluster else 'missing'}",
                retryable=True,
            )
        listed = await account.call(account.client("eks"), "list_nodegroups", clusterName=inp.cluster_name)
        for name in listed.get("nodegroups") or []:
            group = await self._describe_nodegroup(account, inp.cluster_name, name)
            if group is None or group.get("status") != "ACTIVE":
                raise ProviderError(
                    CloudErrorCode.CLOUD_RESOURCE_FAILED,
                    f"node group {name} is {group.get('status') if group else 'missing'}",
                    retryable=True,
                )
        await reporter.event("healthy", f"cluster {inp.cluster_name} and its node groups are ACTIVE", fraction=1.0)
        return PhaseResult(
            inp.phase,
            outputs={
                "cluster": {
                    "kubernetesVersion": cluster.get("version"),
                    "endpoint": cluster.get("endpoint"),
                    "arn": cluster.get("arn"),
                    "accountId": account.account_id,
                }
            },
        )

    # -- delete --

    async def _delete(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        eks = account.client("eks")
        cluster = await self._describe_cluster(account, inp.cluster_name)
        if cluster is not None and (cluster.get("tags") or {}).get(CLUSTER_TAG) not in (None, inp.cluster_id):
            raise ProviderError(
                CloudErrorCode.CLOUD_INVALID_PARAMETER,
                f"EKS cluster {inp.cluster_name} belongs to another cluster record; refusing to delete it.",
                retryable=False,
            )
        if inp.phase == Phase.ADDONS:
            names: list[str] = []
            if cluster is not None:
                names = list((await account.call(eks, "list_addons", clusterName=inp.cluster_name))["addons"])
            for name in names:
                await account.call(
                    eks,
                    "delete_addon",
                    clusterName=inp.cluster_name,
                    addonName=name,
                    missing=("ResourceNotFoundException",),
                )
            for name in names:
                await self._wait_gone(
                    reporter, f"add-on {name}", partial(self._describe_addon, account, inp.cluster_name, name)
                )
            await reporter.event("addons", f"deleted {len(names)} add-ons", fraction=1.0)
            return PhaseResult(inp.phase, resources=[f"eks-addon/{n}" for n in names])
        if inp.phase == Phase.NODE_GROUPS:
            names = []
            if cluster is not None:
                names = list((await account.call(eks, "list_nodegroups", clusterName=inp.cluster_name))["nodegroups"])
            for name in names:
                await account.call(
                    eks,
                    "delete_nodegroup",
                    clusterName=inp.cluster_name,
                    nodegroupName=name,
                    missing=("ResourceNotFoundException",),
                )
                await reporter.event(f"nodegroup/{name}", f"deleting node group {name}")
            for name in names:
                await self._wait_gone(
                    reporter,
                    f"node group {name}",
                    partial(self._describe_nodegroup, account, inp.cluster_name, name),
                )
            return PhaseResult(inp.phase, resources=[f"eks-nodegroup/{n}" for n in names])
        if inp.phase == Phase.CONTROL_PLANE:
            if cluster is not None:
                await account.call(eks, "delete_cluster", name=inp.cluster_name, missing=("ResourceNotFoundException",))
                await reporter.event("cluster", f"deleting EKS cluster {inp.cluster_name}", fraction=0.2)
                await self._wait_gone(
                    reporter, f"cluster {inp.cluster_name}", lambda: self._describe_cluster(account, inp.cluster_name)
                )
            await self._delete_role(account, role_names(inp.cluster_name)[0])
            return PhaseResult(inp.phase, resources=[f"eks-cluster/{inp.cluster_name}"])
        if inp.phase == Phase.NETWORK:
            await self._delete_role(account, role_names(inp.cluster_name)[1])
            deleted = await self._delete_network(inp, reporter, account)
            return PhaseResult(inp.phase, resources=deleted)
        return PhaseResult(inp.phase)

    async def _wait_gone(self, reporter: PhaseReporter, what: str, describe: Callable[[], Any]) -> None:
        await self._wait(reporter, what, describe, ready=set(), failed={"DELETE_FAILED"}, gone_ok=True)

    async def _delete_role(self, account: Account, name: str) -> None:
        iam = account.client("iam")
        attached = await account.call(iam, "list_attached_role_policies", RoleName=name, missing=("NoSuchEntity",))
        if attached is None:
            return
        for policy in attached["AttachedPolicies"]:
            await account.call(
                iam, "detach_role_policy", RoleName=name, PolicyArn=policy["PolicyArn"], missing=("NoSuchEntity",)
            )
        await account.call(iam, "delete_role", RoleName=name, missing=("NoSuchEntity",))

    async def _delete_network(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> list[str]:
        """Delete only what we created (tagged with the cluster ID); a given VPC is never touched."""
        ec2 = account.client("ec2")
        ours = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}]
        deleted: list[str] = []
        gone: tuple[str, ...] = ("InvalidSubnetID.NotFound", "InvalidRouteTableID.NotFound", "InvalidVpcID.NotFound")
        gone += ("InvalidInternetGatewayID.NotFound", "InvalidAssociationID.NotFound", "Gateway.NotAttached")
        for table in (await account.call(ec2, "describe_route_tables", Filters=ours))["RouteTables"]:
            for association in table.get("Associations") or []:
                if not association.get("Main"):
                    await account.call(
                        ec2,
                        "disassociate_route_table",
                        AssociationId=association["RouteTableAssociationId"],
                        missing=gone,
                    )
            await account.call(ec2, "delete_route_table", RouteTableId=table["RouteTableId"], missing=gone)
            deleted.append(f"route-table/{table['RouteTableId']}")
        for subnet in (await account.call(ec2, "describe_subnets", Filters=ours))["Subnets"]:
            await account.call(ec2, "delete_subnet", SubnetId=subnet["SubnetId"], missing=gone)
            deleted.append(f"subnet/{subnet['SubnetId']}")
        for gateway in (await account.call(ec2, "describe_internet_gateways", Filters=ours))["InternetGateways"]:
            for attachment in gateway.get("Attachments") or []:
                await account.call(
                    ec2,
                    "detach_internet_gateway",
                    InternetGatewayId=gateway["InternetGatewayId"],
                    VpcId=attachment["VpcId"],
                    missing=gone,
                )
            await account.call(
                ec2, "delete_internet_gateway", InternetGatewayId=gateway["InternetGatewayId"], missing=gone
            )
            deleted.append(f"internet-gateway/{gateway['InternetGatewayId']}")
        for vpc in (await account.call(ec2, "describe_vpcs", Filters=ours))["Vpcs"]:
            await account.call(ec2, "delete_vpc", VpcId=vpc["VpcId"], missing=gone)
            deleted.append(f"vpc/{vpc['VpcId']}")
        await reporter.event("network", f"deleted {len(deleted)} network resources", fraction=1.0)
        return deleted

    # -- update --

    async def _update(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        cluster = await self._describe_cluster(account, inp.cluster_name)
        if cluster is None:
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED,
                f"EKS cluster {inp.cluster_name} does not exist in account {account.account_id}",
                retryable=False,
            )
        self._must_be_ours(inp, cluster)
        changes = list(inp.change.get("nodeGroups") or [])
        target = inp.change.get("kubernetesVersion")
        if inp.phase == Phase.VALIDATE:
            await self._validate_update(inp, account, cluster, target, changes)
            await reporter.event("plan", f"update of {inp.cluster_name} is valid", fraction=1.0)
            return PhaseResult(inp.phase)
        if inp.phase == Phase.CONTROL_PLANE:
            if not target or cluster.get("version") == target:
                await reporter.event("version", f"control plane already runs {cluster.get('version')}", fraction=1.0)
                return PhaseResult(inp.phase)
            started = await account.call(
                account.client("eks"),
                "update_cluster_version",
                name=inp.cluster_name,
                version=target,
                clientRequestToken=request_token(inp.operation_id, inp.phase, f"version-{target}"),
            )
            await reporter.event("version", f"upgrading control plane to {target}", fraction=0.1)
            await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], None)
            return PhaseResult(inp.phase, outputs={"cluster": {"kubernetesVersion": target}})
        if inp.phase == Phase.NODE_GROUPS:
            return await self._update_node_groups(inp, reporter, account, cluster, changes)
        if inp.phase == Phase.VERIFY:
            return await self._verify(inp, reporter, account)
        return PhaseResult(inp.phase)  # ADDONS: managed add-ons follow the cluster; nothing to change

    async def _validate_update(
        self,
        inp: PhaseInput,
        account: Account,
        cluster: dict[str, Any],
        target: str | None,
        changes: list[dict[str, Any]],
    ) -> None:
        if account.level != "manage":
            raise ProviderError(
                CloudErrorCode.CLOUD_ACCESS_LEVEL_TOO_LOW,
                f"AWS account {account.account_id} is connected read-only. Remedy: reconnect it with level 'manage'.",
                retryable=False,
            )
        if target:
            current = str(cluster.get("version") or "")
            if target not in KUBERNETES_VERSIONS:
                raise ProviderError(
                    ErrorCode.INVALID_SPEC, f"kubernetesVersion {target} is not offered on EKS", retryable=False
                )
            cur_minor, new_minor = int(current.split(".")[1]), int(target.split(".")[1])
            if new_minor < cur_minor or new_minor > cur_minor + 1:
                raise ProviderError(
                    ErrorCode.INVALID_SPEC,
                    f"EKS upgrades one minor version at a time and never downgrades: {current} -> {target}. "
                    f"Remedy: upgrade to 1.{cur_minor + 1} first.",
                    retryable=False,
                )
        listed = await account.call(account.client("eks"), "list_nodegroups", clusterName=inp.cluster_name)
        existing = set(listed.get("nodegroups") or [])
        for change in changes:
            kind, name = change.get("changeType"), change.get("name")
            if kind == "ADD":
                continue  # an existing group is taken as already added
            if kind not in {"RESIZE", "REMOVE", "UPGRADE"}:
                raise ProviderError(ErrorCode.INVALID_SPEC, f"unknown changeType {kind!r} for {name}", retryable=False)
            if kind != "REMOVE" and name not in existing:
                raise ProviderError(
                    ErrorCode.INVALID_SPEC, f"node group {name} does not exist on {inp.cluster_name}", retryable=False
                )

    async def _wait_update(
        self, reporter: PhaseReporter, account: Account, cluster: str, update_id: str, nodegroup: str | None
    ) -> None:
        eks = account.client("eks")
        extra: dict[str, Any] = {"nodegroupName": nodegroup} if nodegroup else {}

        async def describe() -> dict[str, Any]:
            found = await account.call(eks, "describe_update", name=cluster, updateId=update_id, **extra)
            update = dict(found["update"])
            # describe_update says Successful/Failed/Cancelled/InProgress; map to _wait's vocabulary.
            update["status"] = {"Successful": "ACTIVE", "InProgress": "IN_PROGRESS"}.get(
                update["status"], update["status"]
            )
            return update

        what = f"update {update_id} of {nodegroup or cluster}"
        await self._wait(reporter, what, describe, ready={"ACTIVE"}, failed={"Failed", "Cancelled"})

    async def _update_node_groups(
        self,
        inp: PhaseInput,
        reporter: PhaseReporter,
        account: Account,
        cluster: dict[str, Any],
        changes: list[dict[str, Any]],
    ) -> PhaseResult:
        eks = account.client("eks")
        done: list[str] = []
        for index, change in enumerate(changes):
            name, kind = change["name"], change["changeType"]
            token = request_token(inp.operation_id, inp.phase, f"{kind}-{name}")
            if kind == "ADD":
                _, node_role_name = role_names(inp.cluster_name)
                node_role = await self._ensure_role(
                    inp, reporter, account, node_role_name, "ec2.amazonaws.com", NODE_ROLE_POLICIES
                )
                subnet_ids = list((cluster.get("resourcesVpcConfig") or {}).get("subnetIds") or [])
                await self._create_nodegroup(inp, account, change, node_role, subnet_ids)
                await self._wait(
                    reporter,
                    f"node group {name}",
                    partial(self._describe_nodegroup, account, inp.cluster_name, name),
                    ready={"ACTIVE"},
                    failed={"CREATE_FAILED", "DEGRADED"},
                )
            elif kind == "REMOVE":
                await account.call(
                    eks,
                    "delete_nodegroup",
                    clusterName=inp.cluster_name,
                    nodegroupName=name,
                    missing=("ResourceNotFoundException",),
                )
                await self._wait_gone(
                    reporter,
                    f"node group {name}",
                    partial(self._describe_nodegroup, account, inp.cluster_name, name),
                )
            elif kind == "RESIZE":
                group = await self._describe_nodegroup(account, inp.cluster_name, name) or {}
                current = group.get("scalingConfig") or {}
                minimum = int(change.get("minNode", current.get("minSize", 1)))
                maximum = int(change.get("maxNode", current.get("maxSize", minimum)))
                desired = int(
                    change.get("desiredNode", min(max(int(current.get("desiredSize", minimum)), minimum), maximum))
                )
                wanted = {"minSize": minimum, "maxSize": maximum, "desiredSize": desired}
                if {k: current.get(k) for k in wanted} != wanted:
                    started = await account.call(
                        eks,
                        "update_nodegroup_config",
                        clusterName=inp.cluster_name,
                        nodegroupName=name,
                        scalingConfig=wanted,
                        clientRequestToken=token,
                    )
                    await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], name)
            elif kind == "UPGRADE":
                version = change.get("kubernetesVersion") or cluster.get("version")
                group = await self._describe_nodegroup(account, inp.cluster_name, name) or {}
                if group.get("version") != version:
                    started = await account.call(
                        eks,
                        "update_nodegroup_version",
                        clusterName=inp.cluster_name,
                        nodegroupName=name,
                        version=version,
                        clientRequestToken=token,
                    )
                    await self._wait_update(reporter, account, inp.cluster_name, started["update"]["id"], name)
            done.append(f"{kind.lower()}:{name}")
            await reporter.event(
                f"nodegroup/{name}/{kind}", f"{kind} of node group {name} done", fraction=(index + 1) / len(changes)
            )
        return PhaseResult(inp.phase, resources=done)
