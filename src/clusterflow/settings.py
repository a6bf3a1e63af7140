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
    activity_max_attempts: int = Field(default=5, ge=1, description="Attempts per provider phase.")
    reconcile_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often workers look for operations whose workflow never started."
    )
    reconcile_grace_seconds: float = Field(
        default=10.0, ge=0, description="Age after which a PENDING operation with no workflow is restarted."
    )
    worker_max_concurrent_activities: int = Field(default=200, ge=1, description="Activity slots per worker.")
    worker_max_concurrent_workflow_tasks: int = Field(default=200, ge=1, description="Workflow task slots per worker.")

    approval_window_seconds: float = Field(
        default=24 * 3600.0, gt=0, description="How long an operation waits for approval before it is rejected."
    )
    force_cancel_grace_seconds: float = Field(
        default=30.0, ge=0, description="How long a force cancel lets the graceful cancel run before terminating."
    )
    enabled_providers: list[str] = Field(
        default=["local"], description="Providers this deployment accepts (JSON list in the environment)."
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

    secrets_key: str | None = Field(
        default=None,
        description="URL-safe base64 of 32 bytes: seals stored secrets (webhook signing secrets, Slack URLs) "
        "with AES-GCM. `clusterflow dev` generates one.",
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
        default=30, ge=1, description="Days notification events and their delivery log are kept."
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
