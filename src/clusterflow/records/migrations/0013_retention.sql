-- History retention (records/retention.py, workflows/retention.py). Defaults are settings
-- (CLUSTERFLOW_RETENTION_*); an organization may keep some history longer or shorter:
-- NULL means the default. Days, at least one.
ALTER TABLE organizations
    ADD COLUMN retention_events_days integer CHECK (retention_events_days > 0),
    ADD COLUMN retention_audit_days integer CHECK (retention_audit_days > 0),
    ADD COLUMN retention_deliveries_days integer CHECK (retention_deliveries_days > 0),
    ADD COLUMN retention_operations_days integer CHECK (retention_operations_days > 0);

-- Set when retention removed a finished operation's event log; the row keeps its summary
-- (status, message, error, phase, progress, timestamps, event_count) and says so.
ALTER TABLE operations ADD COLUMN events_retired_at timestamptz;

-- What retention looks for, per organization, oldest first, without reading the tables: finished
-- operations whose events are still there, finished operations by age, deliveries by age.
-- (Audit rows have audit_events_org_time.)
CREATE INDEX operations_events_unretired ON operations (organization_id, completed_at)
    WHERE completed_at IS NOT NULL AND events_retired_at IS NULL;
CREATE INDEX operations_finished ON operations (organization_id, completed_at)
    WHERE completed_at IS NOT NULL;
CREATE INDEX notification_deliveries_org_time ON notification_deliveries (organization_id, attempted_at);
CREATE INDEX notification_outbox_dispatched ON notification_outbox (organization_id, created_at)
    WHERE dispatched_at IS NOT NULL;
