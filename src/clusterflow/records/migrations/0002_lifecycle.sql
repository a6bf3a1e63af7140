-- Lifecycle: approvals, cancellation, update/rollback status, delete pre-emption.

ALTER TABLE operations
    ADD COLUMN approval_token_hash    bytea,
    ADD COLUMN approval_expires_at    timestamptz,
    ADD COLUMN approval_required_role text,
    ADD COLUMN approval_plan_hash     text,
    ADD COLUMN approval_decision      text,
    ADD COLUMN approval_decided_by    text,
    ADD COLUMN approval_decided_at    timestamptz,
    ADD COLUMN approval_comment       text,
    ADD COLUMN cancel_requested_at    timestamptz,
    ADD COLUMN cancel_requested_by    text,
    ADD COLUMN cancel_forced          boolean NOT NULL DEFAULT false;

-- One active operation per cluster, except that a delete may pre-empt a deploy (it cancels
-- the deploy, then tears down): so at most one active delete and at most one other active
-- operation. Which combinations are allowed is decided under a lock on the cluster row
-- (records.clusters.lock); these indexes are the backstop that holds even if code forgets.
DROP INDEX operations_one_active_per_cluster;
CREATE UNIQUE INDEX operations_one_active_per_cluster ON operations (cluster_id)
    WHERE status IN ('PENDING', 'AWAITING_APPROVAL', 'RUNNING', 'CANCELLING')
      AND operation_type <> 'CLUSTER_DELETE';
CREATE UNIQUE INDEX operations_one_active_delete_per_cluster ON operations (cluster_id)
    WHERE status IN ('PENDING', 'AWAITING_APPROVAL', 'RUNNING', 'CANCELLING')
      AND operation_type = 'CLUSTER_DELETE';

ALTER TABLE clusters ADD COLUMN tags jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Which operations need an owner's approval, per organization. Keys are policy rules
-- (see clusterflow.approvals); absent keys take the defaults.
ALTER TABLE organizations ALTER COLUMN approval_policy
    SET DEFAULT '{"clusterDelete": true, "minorVersionUpgrade": true}'::jsonb;
UPDATE organizations SET approval_policy = '{"clusterDelete": true, "minorVersionUpgrade": true}'::jsonb
 WHERE approval_policy = '{}'::jsonb;
