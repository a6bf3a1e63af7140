"""The stored provider catalog (migration 0017): refreshed regions, refresh outcomes, the stamp.

Writers are the refresh activity (`save_regions`, `record_failure`); readers are the API (deploy
checks, the planner, the catalog routes) and the provider activities (VALIDATE), which all call
`current_catalog` and so judge a spec against the same value.

`current_catalog` keeps the parsed `Catalog` in this process and reuses it while the stored
`catalog_stamp` is unchanged: one indexed single-row read per call instead of reparsing every
region's document (thousands of AWS instance types). A stamp rather than a time-to-live because
a refresh must take effect at once everywhere: a time-to-live would let the API accept a version
that a worker's VALIDATE, holding an older copy, refuses a moment later (or the reverse).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from clusterflow.catalog import CATALOGS, Catalog, RegionCatalog
from clusterflow.catalog.stored import merged_catalog, region_catalog, region_document
from clusterflow.records.db import Conn, DbPool, Executor


@dataclass(frozen=True)
class RefreshStatus:
    """A provider's latest refresh attempt."""

    provider: str
    last_attempt_at: datetime
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int


_BUMP = """INSERT INTO catalog_stamp (only_row, stamp) VALUES (true, $1)
            ON CONFLICT (only_row) DO UPDATE SET stamp = EXCLUDED.stamp"""


async def save_regions(
    pool: DbPool, provider: str, regions: list[RegionCatalog], refreshed_at: datetime, source: str = "live"
) -> None:
    """Store a successful refresh: the regions read replace their rows (regions the cloud no
    longer offers are dropped), the outcome is a success, and readers see it at once."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM catalog_regions WHERE provider = $1 AND NOT (region = ANY($2::text[]))",
            provider,
            [r.region.id for r in regions],
        )
        await conn.executemany(
            """INSERT INTO catalog_regions (provider, region, document, source, refreshed_at)
                    VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (provider, region) DO UPDATE
                    SET document = EXCLUDED.document, source = EXCLUDED.source, refreshed_at = EXCLUDED.refreshed_at""",
            [(provider, r.region.id, region_document(r), source, refreshed_at) for r in regions],
        )
        await conn.execute(
            """INSERT INTO catalog_refreshes
                    (provider, last_attempt_at, last_success_at, last_error, consecutive_failures)
                    VALUES ($1, $2, $2, NULL, 0)
               ON CONFLICT (provider) DO UPDATE SET last_attempt_at = $2, last_success_at = $2,
                    last_error = NULL, consecutive_failures = 0""",
            provider,
            refreshed_at,
        )
        await conn.execute(_BUMP, uuid.uuid4())


async def record_failure(db: Executor, provider: str, attempted_at: datetime, error: str) -> None:
    """A failed refresh: the stored regions stay as they were; only the outcome changes."""
    await db.execute(
        """INSERT INTO catalog_refreshes (provider, last_attempt_at, last_error, consecutive_failures)
                VALUES ($1, $2, $3, 1)
           ON CONFLICT (provider) DO UPDATE SET last_attempt_at = $2, last_error = $3,
                consecutive_failures = catalog_refreshes.consecutive_failures + 1""",
        provider,
        attempted_at,
        error[:2000],
    )


async def refresh_status(db: Executor) -> list[RefreshStatus]:
    """Every provider's latest refresh attempt."""
    rows = await db.fetch(
        """SELECT provider, last_attempt_at, last_success_at, last_error, consecutive_failures
             FROM catalog_refreshes ORDER BY provider"""
    )
    return [
        RefreshStatus(
            r["provider"], r["last_attempt_at"], r["last_success_at"], r["last_error"], r["consecutive_failures"]
        )
        for r in rows
    ]


async def forget(conn: Conn, provider: str) -> None:
    """Drop a provider's stored catalog and outcomes: it is served from the snapshot again."""
    async with conn.transaction():
        await conn.execute("DELETE FROM catalog_regions WHERE provider = $1", provider)
        await conn.execute("DELETE FROM catalog_refreshes WHERE provider = $1", provider)
        await conn.execute(_BUMP, uuid.uuid4())


async def load_catalog(db: Executor) -> Catalog:
    """Every provider's catalog: stored regions over the snapshot, the snapshot where none."""
    rows = await db.fetch(
        """SELECT provider, region, document, refreshed_at FROM catalog_regions ORDER BY provider, region"""
    )
    regions: dict[str, list[RegionCatalog]] = {}
    oldest: dict[str, datetime] = {}
    for row in rows:
        if row["provider"] not in CATALOGS:
            continue  # a provider this release does not know
        regions.setdefault(row["provider"], []).append(region_catalog(row["region"], row["document"]))
        when: datetime = row["refreshed_at"]
        oldest[row["provider"]] = min(oldest.get(row["provider"], when), when)
    providers = dict(CATALOGS)
    for provider, stored in regions.items():
        refreshed = oldest[provider].isoformat().replace("+00:00", "Z")
        providers[provider] = merged_catalog(CATALOGS[provider], stored, refreshed)
    return Catalog(providers)


_cached: tuple[uuid.UUID | None, Catalog] | None = None


async def current_catalog(db: Executor) -> Catalog:
    """The catalog to judge and serve with now (see the module doc for the cache)."""
    global _cached
    stamp: uuid.UUID | None = await db.fetchval("SELECT stamp FROM catalog_stamp")
    if _cached is not None and _cached[0] == stamp:
        return _cached[1]
    catalog = await load_catalog(db)
    _cached = (stamp, catalog)
    return catalog
