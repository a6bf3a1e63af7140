-- The live provider catalog (issue 19): what a scheduled refresh read from each cloud's API,
-- one row per provider and region, so a region that fails to refresh keeps its last good row.
-- A provider with no rows is served from the snapshot shipped in clusterflow.catalog.
--   document: zones, machine types and Kubernetes versions per provisioner (catalog/stored.py)
--   source: 'live' (read from the cloud)
CREATE TABLE catalog_regions (
    provider text NOT NULL,
    region text NOT NULL,
    document jsonb NOT NULL,
    source text NOT NULL DEFAULT 'live',
    refreshed_at timestamptz NOT NULL,
    PRIMARY KEY (provider, region)
);

-- The outcome of each provider's latest refresh attempt: what operators and /metrics read.
CREATE TABLE catalog_refreshes (
    provider text PRIMARY KEY,
    last_attempt_at timestamptz NOT NULL,
    last_success_at timestamptz,
    last_error text,
    consecutive_failures int NOT NULL DEFAULT 0
);

-- Changes whenever catalog_regions does, so readers keep a parsed catalog until it changes.
CREATE TABLE catalog_stamp (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    stamp uuid NOT NULL
);
