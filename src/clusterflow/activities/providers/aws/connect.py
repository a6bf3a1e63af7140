"""AWS cloud accounts: the connect template, role checks, re-verification, temporary credentials.

Connecting an account is a trust handshake the customer completes in their own console: we
publish a CloudFormation template (in the platform's S3 bucket, behind a presigned URL) that
creates a role trusting the platform's account, guarded by the organization's ExternalId, with
the policy of the chosen level. We then check, one `sts:AssumeRole` per activity call, until
the role can be assumed; the workflow spaces the checks with durable timers.

A role that can be assumed is not yet trusted: the check also reads the role (with its own
credentials) and requires the ExternalId condition and exactly the level's permissions, so a
hand-made or outdated role is reported as misconfigured instead of half working.

Credentials issued to clients are sealed to the requesting API process (`clusterflow.sealing`)
and never logged or stored.
"""

from __future__ import annotations

import ast
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow import sealing
from clusterflow.activities.providers.aws.clients import AwsClients, aws_call
from clusterflow.activities.providers.phases import ProviderError
from clusterflow.contracts import cloud_permissions
from clusterflow.contracts.cloud_accounts import (
    CloudErrorCode,
    ConnectCheckInput,
    ConnectCheckResult,
    ConnectState,
    ConnectTemplateInput,
    ConnectTemplateResult,
    IssueCredentialsInput,
    IssueCredentialsResult,
    MarkAccountInput,
    ReverifyInput,
    ReverifyResult,
)
from clusterflow.contracts.cloud_permissions import AWS_BOUNDARY, Grant, aws_boundary_arn, aws_boundary_name
from clusterflow.records import cloud_accounts, operations
from clusterflow.records.cloud_accounts import CloudAccountRow
from clusterflow.records.db import DbPool

# Session lengths IAM accepts for a role.
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 3600, 43200

# checkov findings on the permissions boundary that must stay, each with its reason (the role
# itself passes every check). A boundary grants nothing: it caps the EKS cluster and node roles.
_CHECKOV_SKIPS = {
    "CKV_AWS_111": "A ceiling, not a grant: the EKS cluster and node roles write EC2, Auto Scaling and ELB "
    "resources EKS names at run time, so the boundary cannot list their ARNs in advance.",
    "CKV_AWS_109": "A ceiling, not a grant: ec2:* includes snapshot and image attribute changes the node role's "
    "AWS-managed policies never use; the attached policies, not the boundary, decide what the role does.",
    "CKV_AWS_107": "ecr:GetAuthorizationToken takes no resource ARN and is how nodes pull images "
    "(AmazonEC2ContainerRegistryReadOnly); only a role bounded by this policy could ever use it.",
}


def policy_name(level: str) -> str:
    return f"clusterflow-{level}"


def statements(listed: tuple[Grant, ...]) -> list[dict[str, Any]]:
    """IAM policy statements, one per grant."""
    result: list[dict[str, Any]] = []
    for grant in listed:
        statement: dict[str, Any] = {
            "Sid": grant.name,
            "Effect": grant.effect,
            "Action": list(grant.actions),
            "Resource": list(grant.resources) if len(grant.resources) > 1 else grant.resources[0],
        }
        if grant.conditions:
            conditions: dict[str, dict[str, Any]] = {}
            for c in grant.conditions:
                conditions.setdefault(c.operator, {})[c.key] = list(c.values) if len(c.values) > 1 else c.values[0]
            statement["Condition"] = conditions
        result.append(statement)
    return result


def level_policy(account: str, role_name: str, level: str) -> dict[str, Any]:
    values = {"account": account, "role": role_name, "boundary": aws_boundary_arn(account, role_name)}
    return {"Version": "2012-10-17", "Statement": statements(cloud_permissions.grants("aws", level, **values))}


def boundary_policy(account: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements(cloud_permissions.fill(AWS_BOUNDARY, account=account))}


def connect_template(
    platform_account: str, external_id: str, account: str, role_name: str, level: str, session_seconds: int
) -> dict[str, Any]:
    """The CloudFormation template the customer deploys in their account: the role, and (for
    `manage`) the permissions boundary every role clusterflow creates must carry."""
    resources: dict[str, Any] = {
        "ClusterflowRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": role_name,
                "MaxSessionDuration": session_seconds,
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": f"arn:aws:iam::{platform_account}:root"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
                        }
                    ],
                },
                "Policies": [
                    {"PolicyName": policy_name(level), "PolicyDocument": level_policy(account, role_name, level)}
                ],
            },
        }
    }
    if level == "manage":
        resources["ClusterflowBoundary"] = {
            "Type": "AWS::IAM::ManagedPolicy",
            "Metadata": {"checkov": {"skip": [{"id": check, "comment": why} for check, why in _CHECKOV_SKIPS.items()]}},
            "Properties": {
                "ManagedPolicyName": aws_boundary_name(role_name),
                "Description": "clusterflow: the most any role clusterflow creates may do",
                "PolicyDocument": boundary_policy(account),
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"clusterflow cloud connect: role {role_name} ({level})",
        "Resources": resources,
        "Outputs": {"RoleArn": {"Value": {"Fn::GetAtt": ["ClusterflowRole", "Arn"]}}},
    }


def _as_document(value: Any) -> dict[str, Any]:
    """A policy document as IAM returns it: JSON (real IAM), or a Python repr (moto's server
    keeps CloudFormation-made inline policies that way)."""
    if not isinstance(value, str):
        return dict(value)
    text = urllib.parse.unquote(value) if value.lstrip().startswith("%") else value
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = ast.literal_eval(text)
    return dict(parsed)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def trust_problem(document: dict[str, Any], platform_account: str, external_id: str) -> str | None:
    for statement in _as_list(document.get("Statement") or []):
        principals = _as_list((statement.get("Principal") or {}).get("AWS") or [])
        trusts_us = any(platform_account in str(p) for p in principals)
        condition = (statement.get("Condition") or {}).get("StringEquals") or {}
        if statement.get("Effect") == "Allow" and trusts_us and condition.get("sts:ExternalId") == external_id:
            return None
    return "the role's trust policy does not require this organization's ExternalId for the platform account"


def _normal(statement: dict[str, Any]) -> str:
    """A statement in a form where order and single-versus-list do not matter."""

    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in sorted(value.items())}
        if isinstance(value, list | tuple):
            return sorted(str(norm(v)) for v in value)
        return sorted([str(value)])

    return json.dumps(norm(statement), sort_keys=True)


def permission_problem(document: dict[str, Any], expected: dict[str, Any], level: str) -> str | None:
    """The role's policy must be exactly the level's: every statement, resource and condition."""
    have = {_normal(s): s.get("Sid") for s in _as_list(document.get("Statement") or [])}
    want = {_normal(s): s.get("Sid") for s in expected["Statement"]}
    if set(have) != set(want):
        missing = sorted(str(want[s] or "?") for s in set(want) - set(have))
        extra = sorted(str(have[s] or "?") for s in set(have) - set(want))
        return (
            f"the role's permissions do not match level {level!r} "
            f"(missing or changed: {missing or 'none'}, extra: {extra or 'none'})"
        )
    return None


@dataclass
class Verdict:
    state: str
    message: str


class AwsCloudConnect:
    def __init__(
        self,
        pool: DbPool,
        clients: AwsClients,
        *,
        bucket: str,
        url_seconds: int,
        credentials_max_seconds: int,
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.bucket = bucket
        self.url_seconds = url_seconds
        self.credentials_max_seconds = credentials_max_seconds
        self._s3_presigner: Any = None

    async def _account(self, cloud_account_id: str) -> CloudAccountRow:
        row = await cloud_accounts.get(self.pool, cloud_account_id)
        if row is None:
            raise ApplicationError(
                f"cloud account {cloud_account_id} has no record", type="UNKNOWN_ACCOUNT", non_retryable=True
            )
        return row

    def _presigner(self) -> Any:
        """An S3 client that signs with SigV4 in the configured region (AWS is retiring SigV2,
        and a SigV4 URL names its region, so it must be the bucket's)."""
        if self._s3_presigner is None:
            region = self.clients.platform_region
            self._s3_presigner = self.clients.platform(region).client(
                "s3",
                endpoint_url=self.clients.endpoint_url,
                region_name=region,
                config=Config(signature_version="s3v4", region_name=region),
            )
        return self._s3_presigner

    async def _platform_account(self) -> str:
        identity = await aws_call(self.clients.platform_client("sts"), "get_caller_identity")
        return str(identity["Account"])

    @activity.defn(name="aws.prepare_connect")
    async def prepare_connect(self, inp: ConnectTemplateInput) -> ConnectTemplateResult:
        """Store the account's template in S3 and presign it; safe to repeat (same key)."""
        row = await self._account(inp.cloud_account_id)
        try:
            external_id = await cloud_accounts.external_id(self.pool, row.organization_id, "aws")
            template = connect_template(
                await self._platform_account(),
                external_id,
                row.account_id,
                row.role_name,
                row.level,
                row.session_seconds,
            )
            s3 = self.clients.platform_client("s3")
            if (
                await aws_call(s3, "head_bucket", Bucket=self.bucket, missing=("404", "NoSuchBucket", "NotFound"))
                is None
            ):
                location: dict[str, Any] = {}
                if self.clients.platform_region != "us-east-1":  # S3's one region without a constraint
                    location = {"CreateBucketConfiguration": {"LocationConstraint": self.clients.platform_region}}
                await aws_call(
                    s3, "create_bucket", Bucket=self.bucket, missing=("BucketAlreadyOwnedByYou",), **location
                )
            key = f"connect/{row.organization_id}/{inp.operation_id}.json"
            await aws_call(
                s3,
                "put_object",
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(template, indent=2).encode(),
                ContentType="application/json",
            )
            url = self._presigner().generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_seconds
            )
        except ProviderError as err:
            raise ApplicationError(err.message, type=err.code, non_retryable=not err.retryable) from err
        await cloud_accounts.set_template_url(self.pool, inp.cloud_account_id, inp.operation_id, url)
        await operations.append_event(
            self.pool,
            inp.operation_id,
            "template/ready",
            f"CloudFormation template ready: create a stack from it in account {row.account_id}",
            kind="progress",
            phase="TEMPLATE",
            progress_percentage=20,
        )
        return ConnectTemplateResult(template_url=url, role_arn=row.role_arn)

    async def verify(self, row: CloudAccountRow, session_name: str) -> Verdict:
        """Assume the account's role and check its trust and permissions."""
        external_id = await cloud_accounts.external_id(self.pool, row.organization_id, "aws")
        try:
            credentials = await self.clients.assume_role(row.role_arn, external_id, session_name, 900)
        except ProviderError as err:
            if err.code == CloudErrorCode.CLOUD_ACCESS_DENIED:
                return Verdict(ConnectState.WAITING, f"role {row.role_arn} cannot be assumed yet: {err.message}")
            raise
        iam = self.clients.client(self.clients.session(credentials, self.clients.platform_region), "iam")
        try:
            role = await aws_call(iam, "get_role", RoleName=row.role_name, missing=("NoSuchEntity",))
            if role is None:
                return Verdict(ConnectState.WAITING, f"role {row.role_name} does not exist yet")
            problem = trust_problem(
                _as_document(role["Role"]["AssumeRolePolicyDocument"]), await self._platform_account(), external_id
            )
            if problem is None:
                policy = await aws_call(
                    iam,
                    "get_role_policy",
                    RoleName=row.role_name,
                    PolicyName=policy_name(row.level),
                    missing=("NoSuchEntity",),
                )
                problem = (
                    f"the role has no policy {policy_name(row.level)}"
                    if policy is None
                    else permission_problem(
                        _as_document(policy["PolicyDocument"]),
                        level_policy(row.account_id, row.role_name, row.level),
                        row.level,
                    )
                )
            if problem is None and row.level == "manage":
                problem = await self._boundary_problem(iam, row)
        except ProviderError as err:
            if err.code == CloudErrorCode.CLOUD_ACCESS_DENIED:
                return Verdict(ConnectState.MISCONFIGURED, f"the role cannot inspect itself: {err.message}")
            raise
        if problem:
            return Verdict(
                ConnectState.MISCONFIGURED,
                f"{problem}. Remedy: create (or update) the stack from the latest template unchanged.",
            )
        return Verdict(ConnectState.CONNECTED, f"role {row.role_arn} assumed and verified for level {row.level}")

    @staticmethod
    async def _boundary_problem(iam: Any, row: CloudAccountRow) -> str | None:
        """The permissions boundary must exist and be exactly the template's: every role the
        connection creates carries it, so it is what limits them."""
        arn = aws_boundary_arn(row.account_id, row.role_name)
        policy = await aws_call(iam, "get_policy", PolicyArn=arn, missing=("NoSuchEntity",))
        if policy is None:
            return f"the permissions boundary {arn} does not exist"
        version = await aws_call(
            iam, "get_policy_version", PolicyArn=arn, VersionId=policy["Policy"]["DefaultVersionId"]
        )
        document = _as_document(version["PolicyVersion"]["Document"])
        if permission_problem(document, boundary_policy(row.account_id), "boundary") is not None:
            return f"the permissions boundary {arn} is not the template's"
        return None

    @activity.defn(name="aws.check_connect")
    async def check_connect(self, inp: ConnectCheckInput) -> ConnectCheckResult:
        row = await self._account(inp.cloud_account_id)
        try:
            verdict = await self.verify(row, f"cf-connect-{inp.operation_id}")
        except ProviderError as err:
            raise ApplicationError(err.message, type=err.code, non_retryable=not err.retryable) from err
        connected = verdict.state == ConnectState.CONNECTED
        await cloud_accounts.record_check(
            self.pool,
            inp.cloud_account_id,
            status=cloud_accounts.CONNECTED if connected else None,
            error=None if connected or verdict.state == ConnectState.WAITING else {"message": verdict.message},
            verified=connected,
            operation_id=inp.operation_id,
        )
        await operations.append_event(
            self.pool,
            inp.operation_id,
            f"check/{inp.check}",
            f"check {inp.check}: {verdict.message}",
            kind="progress" if connected else "log",
            level="WARN" if verdict.state == ConnectState.MISCONFIGURED else "INFO",
            phase="VERIFY" if connected else "WAITING_FOR_ROLE",
            progress_percentage=90 if connected else 30,
            labels={"state": verdict.state},
        )
        return ConnectCheckResult(state=verdict.state, message=verdict.message)

    @activity.defn(name="aws.mark_cloud_account")
    async def mark_cloud_account(self, inp: MarkAccountInput) -> None:
        await cloud_accounts.mark_connect_failed(
            self.pool, inp.cloud_account_id, inp.operation_id, inp.error_message or "the connect failed"
        )

    @activity.defn(name="aws.reverify_accounts")
    async def reverify_accounts(self, inp: ReverifyInput) -> ReverifyResult:
        """Check every connected account once: a broken trust is DEGRADED, a healed one CONNECTED."""
        result = ReverifyResult()
        for row in await cloud_accounts.list_usable(self.pool, "aws", inp.limit):
            activity.heartbeat(row.id)
            try:
                verdict = await self.verify(row, f"cf-reverify-{row.id}")
            except ProviderError as err:
                if err.retryable:
                    continue  # AWS trouble says nothing about the trust; try next round
                verdict = Verdict(ConnectState.MISCONFIGURED, err.message)
            healthy = verdict.state == ConnectState.CONNECTED
            changed = await cloud_accounts.record_reverify(self.pool, row, healthy=healthy, message=verdict.message)
            result.checked += 1
            if changed is not None:
                (result.recovered if healthy else result.degraded).append(row.id)
        return result

    @activity.defn(name="aws.issue_credentials")
    async def issue_credentials(self, inp: IssueCredentialsInput) -> IssueCredentialsResult:
        row = await self._account(inp.cloud_account_id)
        if row.organization_id != inp.organization_id or row.status not in cloud_accounts.USABLE:
            raise ApplicationError(
                "the account is not connected", type=CloudErrorCode.CLOUD_ACCOUNT_NOT_CONNECTED, non_retryable=True
            )
        external_id = await cloud_accounts.external_id(self.pool, row.organization_id, "aws")
        duration = max(900, min(inp.duration_seconds, self.credentials_max_seconds, int(row.session_seconds)))
        try:
            credentials = await self.clients.assume_role(
                row.role_arn, external_id, f"cf-credentials-{activity.info().workflow_id}", duration
            )
        except ProviderError as err:
            raise ApplicationError(err.message, type=err.code, non_retryable=not err.retryable) from err
        expiration = credentials.expiration.isoformat() if credentials.expiration else ""
        payload = {
            "accessKeyId": credentials.access_key_id,
            "secretAccessKey": credentials.secret_access_key,
            "sessionToken": credentials.session_token,
            "expiration": expiration,
        }
        return IssueCredentialsResult(
            sealed=sealing.seal(inp.recipient_public_key, json.dumps(payload).encode()), expiration=expiration
        )
