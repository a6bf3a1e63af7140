"""All configuration in one pydantic-settings class.

Every process (API, worker, dev stack, tests) builds exactly one `Settings` from the
environment; nothing else reads environment variables. The two service addresses use the
conventional unprefixed names (`DATABASE_URL`, `TEMPORAL_ADDRESS`) so platform tooling that
already sets them works; everything else is prefixed `CLUSTERFLOW_`. When either address is
unset, `clusterflow dev` starts the embedded service and fills it in for its children.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLUSTERFLOW_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CLUSTERFLOW_DATABASE_URL"),
        description="PostgreSQL DSN. Unset: `clusterflow dev` starts an embedded server.",
    )
    temporal_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "CLUSTERFLOW_TEMPORAL_ADDRESS"),
        description="Temporal frontend host:port. Unset: `clusterflow dev` starts a dev server.",
    )
    temporal_namespace: str = Field(
        default="default",
        validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "CLUSTERFLOW_TEMPORAL_NAMESPACE"),
        description="Temporal namespace of every workflow.",
    )
    task_queue: str = Field(default="clusterflow", description="Temporal task queue of the workers.")

    state_dir: Path = Field(default=Path(".clusterflow"), description="Run-time state of the dev stack.")
    api_host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(default=8080, description="Port the API listens on.")
    public_url: str | None = Field(
        default=None, description="URL clients use to reach the API (defaults to http://api_host:api_port)."
    )
    temporal_ui_port: int = Field(default=8233, description="Web UI port of the embedded Temporal dev server.")
    temporal_port: int = Field(default=7233, description="gRPC port of the embedded Temporal dev server.")
    postgres_port: int = Field(default=5433, description="Port of the embedded PostgreSQL.")

    db_pool_min: int = Field(default=2, ge=1, description="Database connections each process keeps open.")
    db_pool_max: int = Field(default=20, ge=1, description="Most database connections one process opens.")

    local_phase_seconds: float = Field(
        default=3.0, ge=0, description="Default duration of one simulated phase of the local provider."
    )
    activity_retry_initial_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay of a failed provider activity (doubles each try)."
    )
    activity_heartbeat_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A provider activity silent this long is presumed lost and retried."
    )
    activity_max_attempts: int = Field(
        default=5, ge=1, description="Attempts per provider phase: runs the cloud (or the provider) failed."
    )
    activity_max_infrastructure_retries: int = Field(
        default=20,
        ge=0,
        description="Extra runs of a phase lost to our infrastructure (a worker lost, Temporal away past the "
        "heartbeat timeout); they do not spend the phase's attempts.",
    )
    phase_deadline_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="Longest one phase may take over all its runs before it fails."
    )
    record_write_deadline_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long a workflow's write to an operation record retries a database that is away before "
        "the operation ends FAILED with RECORD_WRITE_FAILED.",
    )
    reconcile_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often workers look for operations whose workflow never started."
    )
    reconcile_grace_seconds: float = Field(
        default=15.0,
        ge=0,
        description="Age after which a PENDING operation with no workflow is restarted; keep it above "
        "CLUSTERFLOW_TEMPORAL_CALL_TIMEOUT_SECONDS + CLUSTERFLOW_DB_ACQUIRE_TIMEOUT_SECONDS.",
    )
    reconcile_abandoned_after_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Idle time after which workers ask Temporal whether an unfinished operation's workflow still "
        "runs; one that ended without recording it is marked FAILED.",
    )
    worker_max_concurrent_activities: int = Field(default=200, ge=1, description="Activity slots per worker.")
    worker_max_concurrent_workflow_tasks: int = Field(default=200, ge=1, description="Workflow task slots per worker.")

    approval_window_seconds: float = Field(
        default=24 * 3600.0, gt=0, description="How long an operation waits for approval before it is rejected."
    )
    worker_max_cached_workflows: int = Field(
        default=1000,
        ge=0,
        description="Workflows a worker keeps in memory; beyond that an event replays the workflow's history.",
    )
    temporal_call_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices(
            "CLUSTERFLOW_TEMPORAL_CALL_TIMEOUT_SECONDS",
            "CLUSTERFLOW_WORKFLOW_START_TIMEOUT_SECONDS",  # its name before it bounded every call
            "temporal_call_timeout_seconds",
        ),
        description="How long the API waits for any Temporal call (start, cancel, terminate, Update, describe, "
        "signal, query) before answering 503 ORCHESTRATOR_UNAVAILABLE.",
    )
    db_acquire_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long an API request waits for a database connection (pool exhausted, PostgreSQL not "
        "answering) before answering 503 DATABASE_UNAVAILABLE.",
    )
    max_workflow_input_bytes: int = Field(
        default=1_572_864,
        ge=1024,
        description="Largest workflow input an enqueue hands to Temporal, as its data converter encodes it "
        "(Temporal refuses blobs over 2 MiB): larger answers 413 PAYLOAD_TOO_LARGE before anything is written.",
    )
    exact_total_limit: int = Field(
        default=1_000,
        ge=1,
        description="Lists count their total exactly up to this many matching rows and estimate it beyond "
        "(`totalCountExact`, `totalItemsExact` false), so a total costs the same however long the history.",
    )
    positional_page_window: int = Field(
        default=10_000,
        ge=1,
        description="How deep positional audit pages (`page` x `pageSize`) reach; deeper answers 400 PAGE_TOO_DEEP "
        "and `pageToken` continues without limit.",
    )
    force_cancel_grace_seconds: float = Field(
        default=30.0, ge=0, description="How long a force cancel lets the graceful cancel run before terminating."
    )
    rate_limit_writes_per_second: float = Field(
        default=10.0, gt=0, description="POST, PUT and PATCH requests per second per API key (all API processes)."
    )
    rate_limit_deletes_per_second: float = Field(
        default=5.0, gt=0, description="DELETE requests per second per API key (all API processes)."
    )
    rate_limit_reads_per_second: float = Field(
        default=25.0, gt=0, description="GET requests per second per API key (all API processes)."
    )
    instance_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often an API process announces itself (rate-limit sharing, key usage)."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body accepted (413 above).")
    enabled_providers: list[str] = Field(
        default=["local"], description="Providers this deployment accepts (JSON list in the environment)."
    )

    api_key_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long an API process may reuse a key it has checked, or an approval policy it has "
        "read (0: read every time). Changes reach every process at once by NOTIFY; this bounds the rest.",
    )
    operation_cache_entries: int = Field(
        default=10_000,
        ge=0,
        le=1_000_000,
        description="Operation records an API process keeps for GET /v1/operations/{id} (a few KB of JSON "
        "each), dropped by NOTIFY when they change (0: read the database every time).",
    )
    stream_keepalive_seconds: float = Field(
        default=15.0, gt=0, description="Idle seconds after which an event stream sends a keep-alive."
    )
    stream_retry_ms: int = Field(
        default=2000, ge=0, description="Reconnect delay an SSE client is told to use (`retry:`), in milliseconds."
    )
    aws_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of every AWS call (moto, LocalStack, a private endpoint). Unset: boto3 resolves "
        "it, honouring the standard `AWS_ENDPOINT_URL`.",
    )
    aws_region: str = Field(default="us-east-1", description="Region of the platform's own STS and S3 calls.")
    aws_connect_bucket: str = Field(
        default="clusterflow-cloud-connect",
        description="S3 bucket (platform account) holding cloud-connect CloudFormation templates.",
    )
    aws_connect_url_seconds: int = Field(
        default=3600, ge=60, le=604800, description="Lifetime of a presigned cloud-connect template URL."
    )
    aws_connect_wait_seconds: float = Field(
        default=7 * 86400.0, gt=0, description="How long a cloud connect waits for the customer's role."
    )
    aws_connect_check_initial_seconds: float = Field(
        default=10.0, gt=0, description="First delay between role checks of a cloud connect (doubles)."
    )
    aws_connect_check_max_seconds: float = Field(
        default=600.0, gt=0, description="Longest delay between role checks of a cloud connect."
    )
    aws_credentials_max_seconds: int = Field(
        default=3600, ge=900, le=43200, description="Cap on the lifetime of issued temporary AWS credentials."
    )
    aws_eks_addons: list[str] = Field(
        default=["vpc-cni", "coredns", "kube-proxy"],
        description="EKS managed add-ons every cluster gets (JSON list in the environment).",
    )
    aws_poll_seconds: float = Field(
        default=10.0, gt=0, description="Interval between AWS describe calls while waiting for a resource."
    )
    aws_reverify_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often connected cloud accounts (AWS, GCP, Azure) are re-verified (DEGRADED on failure).",
    )
    catalog_refresh_interval_seconds: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="How often the catalog of each enabled cloud (versions, regions, machine types) is read from "
        "its API and stored; until the first refresh, and for what a refresh cannot read, the shipped snapshot "
        "is served.",
    )
    catalog_refresh_when_created: bool = Field(
        default=True,
        description="Refresh the catalogs once as soon as the refresh schedule is first created (a new "
        "installation), instead of serving the shipped snapshot until the first interval ends.",
    )
    catalog_regions: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Regions the catalog refresh reads and offers, per provider (JSON, e.g. {"aws": ["us-east-1", '
        '"eu-west-1"]}); a provider not listed keeps the shipped snapshot\'s regions.',
    )
    catalog_aws_instance_families: list[str] = Field(
        default_factory=lambda: [
            *("t3", "t3a", "t4g", "m5", "m6i", "m6a", "m6g", "m7i", "m7a", "m7g", "c5", "c6i", "c6a", "c6g"),
            *("c7i", "c7g", "r5", "r6i", "r6a", "r6g", "r7i", "r7g", "g5", "g6", "p4d", "p5", "inf2", "trn1"),
        ],
        description="EC2 instance families the live AWS catalog offers (JSON list); EC2 lists hundreds of types, "
        "most of them unsuited to Kubernetes nodes.",
    )
    registration_token_ttl_seconds: float = Field(
        default=3600.0, gt=0, description="How long a cluster registration's one-time agent token stays usable."
    )
    registration_timeout_seconds: float = Field(
        default=1800.0, gt=0, description="How long a registration waits for its agent to connect before failing."
    )
    agent_image: str = Field(
        default="ghcr.io/clusterflow/agent:0.1.0",
        # name:tag, name@sha256:<digest> or both (deploy/agent.Dockerfile builds it); a bare name
        # would mean `latest`, which is refused.
        pattern=r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
        r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
        r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127}(?:@sha256:[0-9a-f]{64})?|@sha256:[0-9a-f]{64})$",
        description="Container image the agent manifest deploys: `name:tag` or, pinned, `name@sha256:<digest>`.",
    )
    agent_namespace: str = Field(
        default="clusterflow-agent", description="Namespace the agent manifest installs the agent into."
    )
    agent_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="How often connected agents are told to send a heartbeat."
    )
    agent_disconnect_after_seconds: float = Field(
        default=45.0, gt=0, description="An agent silent this long is marked DISCONNECTED."
    )
    agent_monitor_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often workers look for agents whose heartbeats stopped."
    )
    agent_command_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often an agent's connection checks for work for it (rotation, removal)."
    )
    agent_uninstall_wait_seconds: float = Field(
        default=60.0, ge=0, description="How long an unregistration waits for a connected agent to remove itself."
    )
    kubeconfig_timeout_seconds: float = Field(
        default=300.0, gt=0, description="How long a kubeconfig generation waits for the cluster's agent."
    )
    vault_keys: dict[str, SecretStr] = Field(
        default={},
        description="Encryption keys of stored secrets: JSON map of key ID to base64 of 32 random bytes.",
    )
    vault_active_key_id: str | None = Field(
        default=None, description="Key ID that seals new secrets (optional with a single key); older keys still open."
    )
    gcp_endpoint: str | None = Field(
        default=None,
        description="GKE API endpoint (scheme://host[:port]); unset: container.googleapis.com.",
    )
    gcp_access_token: SecretStr | None = Field(
        default=None,
        description="Static OAuth access token for GKE; unset: Application Default Credentials.",
    )
    gcp_default_project: str | None = Field(
        default=None, description="GCP project of GKE clusters whose spec names none (provisioner.gke.projectId)."
    )
    gcp_poll_seconds: float = Field(default=5.0, gt=0, description="How often a GKE Operation is polled while waiting.")
    azure_arm_endpoint: str = Field(
        default="https://management.azure.com", description="Azure Resource Manager endpoint used for AKS."
    )
    azure_authority_host: str = Field(
        default="https://login.microsoftonline.com", description="Microsoft Entra ID authority that issues ARM tokens."
    )
    azure_tenant_id: str | None = Field(default=None, description="Entra ID tenant of the AKS service principal.")
    azure_client_id: str | None = Field(
        default=None, description="Client (application) ID of the AKS service principal."
    )
    azure_client_secret: SecretStr | None = Field(
        default=None, description="Client secret of the AKS service principal (never logged)."
    )
    azure_ca_bundle: Path | None = Field(
        default=None, description="CA bundle to trust for ARM and Entra ID (private endpoints, proxies); unset: system."
    )
    azure_default_subscription_id: str | None = Field(
        default=None, description="Subscription of AKS clusters whose spec names none (provisioner.aks.subscriptionId)."
    )
    azure_default_resource_group: str | None = Field(
        default=None,
        description="Resource group of AKS clusters whose spec names none (provisioner.aks.resourceGroup).",
    )
    azure_poll_seconds: float = Field(
        default=10.0, gt=0, description="AKS long-running operation poll interval when ARM sends no Retry-After."
    )
    gcp_sts_endpoint: str = Field(
        default="https://sts.googleapis.com/v1/token",
        description="Google STS token endpoint for Workload Identity Federation (GCP cloud connect).",
    )
    gcp_iam_credentials_endpoint: str = Field(
        default="https://iamcredentials.googleapis.com",
        description="Google IAM Credentials endpoint used to impersonate connected service accounts.",
    )
    platform_oidc_issuer: str | None = Field(
        default=None,
        description="Issuer URL of the tokens connected clouds trust (serves /.well-known); unset: the public URL.",
    )
    platform_oidc_signing_key: SecretStr | None = Field(
        default=None,
        description="PEM RSA key signing those tokens; unset: generated once under the state directory.",
    )
    cloud_connect_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="How long a GCP/Azure cloud connect waits for its setup script to run."
    )
    cloud_connect_poll_seconds: float = Field(
        default=15.0, gt=0, description="How often a waiting GCP/Azure cloud connect tries the token exchange."
    )
    cloud_credentials_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a cloud-credentials request waits for a worker to issue them (503 after).",
    )

    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json`: one JSON object per line (production); `text`: for people."
    )

    temporal_tls: bool = Field(
        default=False, description="Connect to Temporal over TLS (implied by a client certificate or an API key)."
    )
    temporal_tls_cert: Path | None = Field(
        default=None, description="PEM client certificate for mTLS to Temporal (self-hosted or Temporal Cloud)."
    )
    temporal_tls_key: Path | None = Field(default=None, description="PEM private key of `temporal_tls_cert`.")
    temporal_tls_ca: Path | None = Field(
        default=None, description="PEM CA bundle that signs the Temporal server (default: system roots)."
    )
    temporal_tls_server_name: str | None = Field(
        default=None, description="TLS server name to verify, when it differs from the address host."
    )
    temporal_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_API_KEY", "CLUSTERFLOW_TEMPORAL_API_KEY"),
        description="Temporal Cloud API key (sent as a bearer token; turns TLS on).",
    )

    metrics_port: int = Field(
        default=9464, ge=0, description="Port of the worker's Prometheus endpoint (0: none); the API serves /metrics."
    )
    temporal_sdk_metrics_port: int = Field(
        default=0,
        ge=0,
        description="Port where a worker exposes the Temporal SDK's own Prometheus metrics "
        "(task latency, slots, polls); 0: off.",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "CLUSTERFLOW_OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP endpoint for traces (e.g. http://otel-collector:4318). Unset: tracing off.",
    )
    otel_service_name: str = Field(
        default="clusterflow", description="Service name on spans (`-api` or `-worker` is appended)."
    )

    notification_dispatch_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often workers look for notification events to dispatch."
    )
    notification_max_attempts: int = Field(default=8, ge=1, description="Delivery attempts per channel and event.")
    notification_retry_initial_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay of a failed delivery (doubles each try)."
    )
    notification_retry_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest delay between two delivery attempts."
    )
    notification_http_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one webhook, Slack or SMTP delivery attempt."
    )
    notification_allow_private_targets: bool = Field(
        default=False, description="Allow webhook and Slack URLs that resolve to private or loopback addresses."
    )
    notification_retention_days: int = Field(
        default=30,
        ge=1,
        description="Days notification events and their delivery log are kept (an organization may override it).",
    )
    retention_events_days: int = Field(
        default=90,
        ge=1,
        description="Days after an operation finishes that its event log is kept; the operation keeps its "
        "summary and final status (an organization may override it).",
    )
    retention_audit_days: int = Field(
        default=400, ge=1, description="Days audit events are kept (an organization may override it)."
    )
    retention_operations_days: int = Field(
        default=400,
        ge=1,
        description="Days finished operations are kept, unless another record (a cloud account, a kubeconfig) "
        "refers to them (an organization may override it).",
    )
    retention_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often the HistoryRetention schedule retires old history."
    )
    retention_batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Rows (or events of operations) retention deletes per short transaction.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for email notifications (unset: none).")
    smtp_port: int = Field(default=25, description="SMTP server port.")
    smtp_username: str | None = Field(default=None, description="SMTP login (with `smtp_password`).")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_from: str = Field(default="clusterflow@localhost", description="Sender address of notification emails.")

    @property
    def api_url(self) -> str:
        return self.public_url or f"http://{self.api_host}:{self.api_port}"

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set (run through `clusterflow dev` or set it)")
        return self.database_url

    def require_temporal_address(self) -> str:
        if not self.temporal_address:
            raise RuntimeError("TEMPORAL_ADDRESS is not set (run through `clusterflow dev` or set it)")
        return self.temporal_address


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
