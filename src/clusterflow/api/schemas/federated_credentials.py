"""Short-lived credentials for connected GCP and Azure accounts, in the reference's shapes."""

from __future__ import annotations

from pydantic import BaseModel

from clusterflow.api.schemas.clusters import DnsName, Region
from clusterflow.api.schemas.common import Strict
from clusterflow.api.schemas.federated_cloud_accounts import Duration, ProjectId, ResourceGroup, Uuid


class GcpCredentialsRequest(Strict):
    clusterName: DnsName
    duration: Duration | None = None
    targetProjectId: ProjectId | None = None
    targetRegion: Region | None = None


class GcpCredentials(BaseModel):
    accessToken: str
    expiration: str
    projectId: str
    serviceAccountEmail: str


class AzureCredentialsRequest(Strict):
    clusterName: DnsName
    subscriptionId: Uuid | None = None
    resourceGroup: ResourceGroup | None = None
    targetRegion: Region | None = None
    duration: Duration | None = None


class AzureCredentials(BaseModel):
    accessToken: str
    aksApiAudience: str
    clientId: str
    expiration: str
    resourceGroup: str
    subscriptionId: str
    tenantId: str
