-- Lists that stay flat as history grows (issue 21, measured by tests/perf/bench_growth.py).
-- Each filter of GET /v1/operations and GET /v1/audit/events has an index of its own in keyset
-- order, so a filtered page reads only matching rows and its count reads only matching index
-- entries (index-only), instead of the organization's whole history (EXPLAIN showed sequential
-- scans of both tables for the status, type, action, eventType and userId filters).
-- A migration runs in a transaction, so these are plain CREATE INDEX: on a large database they
-- hold writes to the table while they build (seconds per million rows); a DBA may create them
-- CONCURRENTLY beforehand under the same names, which this file then skips.
CREATE INDEX IF NOT EXISTS operations_org_status ON operations (organization_id, status, id DESC);
CREATE INDEX IF NOT EXISTS operations_org_type ON operations (organization_id, operation_type, id DESC);
CREATE INDEX IF NOT EXISTS audit_events_org_action ON audit_events (organization_id, action, occurred_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_events_org_type ON audit_events (organization_id, event_type, occurred_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_events_org_actor ON audit_events (organization_id, actor, occurred_at DESC, id DESC);
