"""Contracts of cloud accounts: connect, re-verification, temporary credentials, cloud errors.

Kept apart from `contracts.py` because they concern accounts rather than clusters; the same
evolution rule holds (fields only ever grow, with defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from clusterflow.contracts.operations import ExecutionPolicy


class CloudErrorCode(StrEnum):
    """Stable codes of classified cloud failures (shared by every cloud provider)."""

    CLOUD_THROTTLED = "CLOUD_THROTTLED"
    CLOUD_UNAVAILABLE = "CLOUD_UNAVAILABLE"
    CLOUD_ACCESS_DENIED = "CLOUD_ACCESS_DENIED"
    CLOUD_QUOTA_EXCEEDED = "CLOUD_QUOTA_EXCEEDED"
    CLOUD_INVALID_PARAMETER = "CLOUD_INVALID_PARAMETER"
    CLOUD_RESOURCE_FAILED = "CLOUD_RESOURCE_FAILED"
    CLOUD_ERROR = "CLOUD_ERROR"
    CLOUD_ACCOUNT_NOT_CONNECTED = "CLOUD_ACCOUNT_NOT_CONNECTED"
    CLOUD_ACCESS_LEVEL_TOO_LOW = "CLOUD_ACCESS_LEVEL_TOO_LOW"
    CLOUD_CONNECT_TIMED_OUT = "CLOUD_CONNECT_TIMED_OUT"
    # A federated token exchange refused (the customer removed or changed the federation).
    CLOUD_CREDENTIALS_FAILED = "CLOUD_CREDENTIALS_FAILED"


class ConnectState(StrEnum):
    WAITING = "WAITING"
    MISCONFIGURED = "MISCONFIGURED"
    CONNECTED = "CONNECTED"


@dataclass
class ConnectContinuation:
    """Where a long wait resumes after continue-as-new (keeps each run's history short)."""

    checks: int
    deadline: str
    delay_seconds: float
    role_arn: str


@dataclass
class CloudConnectInput:
    operation_id: str
    organization_id: str
    cloud_account_id: str
    account_id: str
    level: str
    wait_seconds: float
    check_initial_seconds: float
    check_max_seconds: float
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)
    continued: ConnectContinuation | None = None
    # Checks per run before continuing as new: a week of waiting stays far below history limits.
    checks_per_run: int = 200


@dataclass
class ConnectTemplateInput:
    operation_id: str
    cloud_account_id: str


@dataclass
class ConnectTemplateResult:
    template_url: str
    role_arn: str


@dataclass
class ConnectCheckInput:
    operation_id: str
    cloud_account_id: str
    check: int


@dataclass
class ConnectCheckResult:
    state: str
    message: str


@dataclass
class MarkAccountInput:
    operation_id: str
    cloud_account_id: str
    status: str
    error_message: str | None = None


@dataclass
class ReverifyInput:
    limit: int = 1000


@dataclass
class ReverifyResult:
    checked: int = 0
    degraded: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)


@dataclass
class IssueCredentialsInput:
    organization_id: str
    cloud_account_id: str
    duration_seconds: int
    # X25519 public key (base64) of the requesting API process: the credentials travel sealed
    # to it, so Temporal's history only ever holds ciphertext nobody can open later.
    recipient_public_key: str
    # Which cloud: the activity `<provider>.issue_credentials` issues them. For GCP and Azure
    # `cloud_account_id` is the federated account's ID and `duration_seconds` 0 means the
    # longest the cloud allows.
    provider: str = "aws"


@dataclass
class IssueCredentialsResult:
    sealed: str
    expiration: str


@dataclass
class IssueKubeconfigInput:
    """A kubeconfig for a managed (EKS, GKE, AKS) cluster, built on a worker and sealed to the
    requesting API process's ephemeral key, like `IssueCredentialsInput`. Only IDs travel: the
    activity re-reads the cluster scoped to the organization."""

    organization_id: str
    cluster_id: str
    provider: str
    duration_seconds: int
    recipient_public_key: str
