"""Cloud accounts (AWS connect) and temporary credentials, after the reference API."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from clusterflow.api.schemas.clusters import DnsName, Region
from clusterflow.api.schemas.common import Strict
from clusterflow.api.schemas.operations import OperationEvent
from clusterflow.contracts.cloud_permissions import Grant

AccountId = Annotated[str, StringConstraints(max_length=12, pattern=r"^[0-9]{12}$")]

_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms|us|µs|ns))+$")
_UNIT_NS = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "µs": 1e3, "ns": 1.0}
Duration = Annotated[int, Field(ge=0, le=9223372036854775807)] | Annotated[str, StringConstraints(max_length=32)]


def duration_seconds(value: int | str | None) -> int | None:
    """Seconds of a Go duration: nanoseconds as an integer, or text such as "1h30m"."""
    if value is None:
        return None
    if isinstance(value, int):
        return value // 1_000_000_000
    if not _GO_DURATION.match(value):
        raise ValueError("must be nanoseconds or a Go duration such as '1h' or '30m'")
    total = sum(float(n) * _UNIT_NS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)", value))
    return int(total // 1_000_000_000)


class _WithDuration(Strict):
    duration: Duration | None = Field(
        default=None, description="Validity of the credentials: nanoseconds, or a Go duration such as '1h'"
    )

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: int | str | None) -> int | str | None:
        seconds = duration_seconds(value)
        if seconds is not None and seconds <= 0:
            raise ValueError("must be positive")
        return value


class AwsCloudAccountRequest(_WithDuration):
    clusterName: DnsName
    destinationAccountId: AccountId | None = Field(
        default=None, description="Target AWS account; default: provisioner.eks.accountId of the named cluster"
    )
    level: Literal["read", "manage"] = "manage"
    targetRegion: Region | None = None
    forceUpdate: bool = Field(default=False, description="Reconnect an account that is already connected")


class CloudAccountError(BaseModel):
    message: str


class CloudPermission(BaseModel):
    """One thing the customer grants at the chosen level (`contracts/cloud_permissions.py`)."""

    name: str = Field(description="AWS: the policy statement's Sid; GCP and Azure: a short label")
    effect: Literal["Allow", "Deny"]
    actions: list[str] = Field(description="AWS IAM actions, or the GCP role / Azure role definition")
    resources: list[str] = Field(description="AWS resource ARNs, or the GCP/Azure scope the role is bound on")
    conditions: list[str] = Field(default=[], description="IAM conditions, as `Operator key = value, ...`")
    why: str = Field(description="Which operation needs it")

    @classmethod
    def of(cls, grant: Grant, resources: list[str] | None = None) -> CloudPermission:
        return cls(
            name=grant.name,
            effect="Deny" if grant.effect == "Deny" else "Allow",
            actions=list(grant.actions),
            resources=resources if resources is not None else list(grant.resources),
            conditions=[f"{c.operator} {c.key} = {', '.join(c.values)}" for c in grant.conditions],
            why=grant.why,
        )


class AwsCloudAccount(BaseModel):
    id: str = Field(description="The cloud-connect operation ID")
    status: str = Field(description="PENDING, WAITING_FOR_ROLE, CONNECTED, DEGRADED or FAILED")
    preSignedTargetCFTemplateURL: str | None = Field(
        default=None, description="CloudFormation template to create the role from (null until it is published)"
    )
    error: CloudAccountError | None = None
    accountId: str | None = None
    level: str | None = None
    region: str | None = None
    roleArn: str | None = None
    operationStatus: str | None = None
    lastVerifiedAt: str | None = None
    permissions: list[CloudPermission] = Field(
        default=[], description="What the template grants at this level, before anything is created"
    )
    steps: list[OperationEvent] = []


class AwsCredentialsRequest(_WithDuration):
    clusterName: DnsName
    destinationAccountId: AccountId | None = None
    targetRegion: Region | None = None


class AwsTemporaryCredentials(BaseModel):
    accessKeyId: str
    secretAccessKey: str
    sessionToken: str
    expiration: str
