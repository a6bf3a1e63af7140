"""GCP and Azure cloud connect documents, after the reference's `/cloud-accounts/{gcp,azure}`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from clusterflow.api.schemas.cloud_accounts import CloudPermission
from clusterflow.api.schemas.clusters import DnsName, Region
from clusterflow.api.schemas.common import Strict

ProjectId = Annotated[str, StringConstraints(max_length=30, pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")]
ProjectNumber = Annotated[str, StringConstraints(max_length=20, pattern=r"^[0-9]{6,20}$")]
Uuid = Annotated[str, StringConstraints(max_length=36, pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")]
ResourceGroup = Annotated[str, StringConstraints(max_length=90, pattern=r"^[-\w._()]{1,90}$")]
Duration = Annotated[int, Field(ge=0, le=9223372036854775807, description="Credential validity (nanoseconds)")]


class GcpConnectRequest(Strict):
    clusterName: DnsName
    targetProjectId: ProjectId
    targetProjectNumber: ProjectNumber
    targetRegion: Region | None = None
    level: Literal["read", "manage"] = "manage"
    duration: Duration | None = None
    forceUpdate: bool = False


class AzureConnectRequest(Strict):
    clusterName: DnsName
    subscriptionId: Uuid
    resourceGroup: ResourceGroup
    targetRegion: Region | None = None
    level: Literal["read", "manage"] = "manage"
    duration: Duration | None = None
    forceUpdate: bool = False


class AzureCallback(Strict):
    token: Annotated[str, StringConstraints(min_length=16, max_length=128)]
    tenantId: Uuid
    clientId: Uuid


class AccountError(BaseModel):
    message: str
    step: str | None = Field(
        default=None, description="Re-verification: the step that failed (token exchange, impersonation, ...)"
    )
    remedy: str | None = Field(default=None, description="What the customer should do to repair the connection")


class GcpCloudAccount(BaseModel):
    id: str = Field(description="Cloud account operation ID")
    operationId: str
    status: str = Field(
        description="PENDING, WAITING_FOR_SETUP, CONNECTED, DEGRADED (re-verification found the federation "
        "broken; still used) or FAILED"
    )
    cloudShellScript: str
    cloudShellScriptURL: str
    error: AccountError | None = None
    clusterName: str
    level: str
    targetProjectId: str
    targetProjectNumber: str
    targetRegion: str | None = None
    serviceAccountEmail: str
    createdAt: str
    connectedAt: str | None = None
    lastCheckedAt: str | None = Field(default=None, description="When re-verification last checked the federation")
    permissions: list[CloudPermission] = Field(
        default=[], description="What the setup script grants at this level, before anything is run"
    )


class AzureCloudAccount(BaseModel):
    id: str = Field(description="Cloud account operation ID")
    operationId: str
    status: str = Field(
        description="PENDING, WAITING_FOR_SETUP, CONNECTED, DEGRADED (re-verification found the federation "
        "broken; still used) or FAILED"
    )
    setupScript: str
    setupScriptURL: str
    error: AccountError | None = None
    clusterName: str
    level: str
    subscriptionId: str
    resourceGroup: str
    targetRegion: str | None = None
    tenantId: str | None = None
    clientId: str | None = None
    createdAt: str
    connectedAt: str | None = None
    lastCheckedAt: str | None = Field(default=None, description="When re-verification last checked the federation")
    permissions: list[CloudPermission] = Field(
        default=[], description="What the setup script grants at this level, before anything is run"
    )


class CallbackAccepted(BaseModel):
    status: str
