"""Documents of registered clusters (register, registration status, kubeconfig, resync) and
of the self-hosted credentials vault, with the reference's field names."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from clusterflow.api.schemas.clusters import ClusterLabels, DnsName, KubeVersion, Region
from clusterflow.api.schemas.common import Strict

ShortValue = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ErrorMessage(BaseModel):
    message: str


class RegisterRequest(Strict):
    architecture: Literal["amd64", "arm64"] = Field(
        default="amd64", description="Architecture of the cluster's nodes; the agent is scheduled on it"
    )
    clusterName: str | None = Field(default=None, max_length=50, description="Ignored: the path names the cluster")
    dryRun: bool = Field(default=False, description="Return the manifest without persisting anything")
    kubernetesVersion: KubeVersion | None = Field(default=None, description="Detected by the agent when omitted")
    labels: ClusterLabels = Field(
        default={},
        description="The cluster's labels in clusterflow, as a deploy's `metadata.labels` (a registration "
        "issued again keeps the cluster's labels; change them with PATCH)",
    )
    provisioner: str | None = Field(default=None, max_length=64, description="Ignored: set by the server")
    provisionerConfig: dict[str, Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        default=None, description="Reserved for future use"
    )
    region: Region | None = Field(default=None, description="Where the cluster runs; detected when possible")


class Registration(BaseModel):
    operationId: str | None = Field(description="The CLUSTER_REGISTER operation (null for a dry run)")
    clusterId: str | None
    clusterName: str
    status: str = Field(description="PENDING for a registration, DRY_RUN for a dry run")
    message: str
    manifest: str | None = Field(description="Agent manifest (multi-document YAML); holds the one-time token")
    installScript: str | None = Field(description="One line that applies the manifest (kubectl)")
    registrationTokenExpiresAt: str | None = Field(description="When the one-time token stops working")
    error: ErrorMessage | None = None


class Instructions(BaseModel):
    message: str
    scriptContent: str | None = None
    url: str | None = None


class AgentInfo(BaseModel):
    kubernetesVersion: str | None = None
    nodeCount: int | None = None
    namespaceCount: int | None = None
    architecture: str | None = None
    region: str | None = None
    agentVersion: str | None = None


class ConnectionEvent(BaseModel):
    timestamp: str
    status: str
    message: str


class RegistrationStatus(BaseModel):
    clusterId: str
    clusterName: str
    clusterState: str
    connectionStatus: Literal["CONNECTED", "DISCONNECTED", "NEVER_CONNECTED"]
    lastHealthCheck: str | None = Field(description="Time of the agent's last heartbeat")
    operationId: str | None
    status: str | None = Field(description="Status of the registration operation (or the one asked for)")
    message: str
    error: ErrorMessage | None = None
    instructions: Instructions
    agent: AgentInfo | None = None
    revoked: bool
    connectionEvents: list[ConnectionEvent]


class KubeconfigCredentials(BaseModel):
    type: Literal["static", "dynamic", "vault"]
    data: dict[str, Annotated[str, StringConstraints(max_length=8192)]] = Field(default_factory=dict)


class KubeconfigRequest(Strict):
    clusterName: DnsName
    credentials: KubeconfigCredentials | None = Field(
        default=None, description="Cloud credentials (managed clusters); registered clusters need none"
    )
    duration: Annotated[int, Field(ge=1, le=9223372036854775807)] | Annotated[str, StringConstraints(max_length=32)] = (
        Field(description="Validity: nanoseconds (integer) or a Go duration string such as 1h, 30m, 24h")
    )


class Kubeconfig(BaseModel):
    operationId: str | None = Field(
        description="The KUBECONFIG_GENERATE operation; null for managed clusters, answered at once"
    )
    clusterId: str
    status: Literal["PENDING", "READY", "FAILED", "EXPIRED"]
    kubeconfig: str | None = Field(default=None, description="The kubeconfig (YAML), once READY")
    expiresAt: str | None = None
    error: ErrorMessage | None = None


class SelfHostedCredentialsRequest(Strict):
    accountId: ShortValue
    bucketName: ShortValue
    clusterName: DnsName
    credentials: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128)],
        Annotated[str, StringConstraints(max_length=16384)],
    ] = Field(min_length=1, description="Credential key-value pairs; stored encrypted, never returned")
    forceUpdate: bool = False
    provider: Literal["aws", "azure", "gcp"]
    region: Region


class CredentialsStored(BaseModel):
    clusterName: str
    status: str
    error: ErrorMessage | None = None


class CredentialsStatus(BaseModel):
    clusterName: str
    provider: str
    accountId: str
    region: str
    status: str
    lastValidated: str | None
    vaultType: str
    keyId: str = Field(description="ID of the key that encrypts them (for rotation)")
    error: ErrorMessage | None = None


class Empty(BaseModel):
    """An answer with nothing in `data`: `{}`, and never anything else."""

    model_config = ConfigDict(extra="forbid")
