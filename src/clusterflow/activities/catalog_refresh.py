"""The catalog refresh activity: read one provider's catalog from its cloud and store it.

The readers live with their providers (`providers/<cloud>/catalog.py`, the cloud's SDK and
error classification); this module chooses one, stores what it read (`records.catalog`), and
accounts for the outcome. A failure of any kind (the cloud refusing or unreachable, an answer
that offers nothing) is recorded and counted but not raised: the last good catalog stays in
place, and the next scheduled run is the retry, so a cloud outage never turns into a storm of
attempts nor a half-written catalog (`save_regions` replaces a provider's regions in one
transaction, and only after every region was read).

Metrics (this worker's `/metrics`): `clusterflow_catalog_refresh_failures_total{provider}`
counts failed refreshes, `clusterflow_catalog_refreshed_timestamp_seconds{provider}` is when the
stored catalog last changed; alert on the first growing or the second growing old.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge
from temporalio import activity

from clusterflow.activities.providers.aws.catalog import read_aws_catalog
from clusterflow.activities.providers.aws.clients import AwsClients
from clusterflow.activities.providers.azure.catalog import read_aks_catalog
from clusterflow.activities.providers.gcp.catalog import read_gke_catalog
from clusterflow.activities.providers.phases import ProviderError
from clusterflow.catalog import CATALOGS, RegionCatalog
from clusterflow.catalog.refresh import REFRESH_ACTIVITY, REFRESHABLE, ProviderRefreshInput, ProviderRefreshResult
from clusterflow.records import catalog as stored
from clusterflow.records.db import DbPool
from clusterflow.settings import Settings

log = logging.getLogger(__name__)

REFRESH_FAILURES = Counter(
    "clusterflow_catalog_refresh_failures_total",
    "Catalog refreshes that failed (the last good catalog stayed in place), by provider",
    ["provider"],
)
REFRESHED_AT = Gauge(
    "clusterflow_catalog_refreshed_timestamp_seconds",
    "When this worker last stored a provider's catalog read from its cloud (Unix time)",
    ["provider"],
)


class CatalogRefreshActivities:
    def __init__(self, pool: DbPool, settings: Settings, aws_clients: AwsClients) -> None:
        self.pool = pool
        self.settings = settings
        self.aws_clients = aws_clients

    async def _read(self, provider: str) -> list[RegionCatalog]:
        snapshot = CATALOGS[provider]
        regions = self.settings.catalog_regions.get(provider) or [r.id for r in snapshot.regions]
        if provider == "aws":
            families = self.settings.catalog_aws_instance_families
            return await read_aws_catalog(self.aws_clients, snapshot, regions, families)
        if provider == "gcp":
            return await read_gke_catalog(self.settings, snapshot, regions)
        return await read_aks_catalog(self.settings, snapshot, regions)

    @activity.defn(name=REFRESH_ACTIVITY)
    async def refresh_provider(self, inp: ProviderRefreshInput) -> ProviderRefreshResult:
        """Read `inp.provider`'s catalog and store it; a failure leaves the stored one alone."""
        if inp.provider not in REFRESHABLE:
            return ProviderRefreshResult(inp.provider, error=f"provider {inp.provider!r} has no catalog to refresh")
        started = datetime.now(UTC)
        try:
            regions = await self._read(inp.provider)
            if not regions:
                raise ValueError("the cloud offered none of the catalog's regions")
        except (ProviderError, ValueError) as err:
            return await self._failed(inp.provider, started, str(err))
        except Exception as err:  # an SDK failure no classifier knows: still a failed refresh
            return await self._failed(inp.provider, started, f"{type(err).__name__}: {err}")
        await stored.save_regions(self.pool, inp.provider, regions, started)
        REFRESHED_AT.labels(inp.provider).set(started.timestamp())
        log.info("catalog of %s refreshed: %d regions", inp.provider, len(regions))
        return ProviderRefreshResult(inp.provider, regions=len(regions))

    async def _failed(self, provider: str, started: datetime, error: str) -> ProviderRefreshResult:
        REFRESH_FAILURES.labels(provider).inc()
        log.warning("catalog of %s not refreshed, the last good one stays: %s", provider, error)
        await stored.record_failure(self.pool, provider, started, error)
        return ProviderRefreshResult(provider, error=error)
