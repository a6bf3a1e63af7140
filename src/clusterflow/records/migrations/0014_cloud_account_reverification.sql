-- GCP and Azure accounts are re-verified on the same schedule as AWS (issue 16): a broken
-- federation is DEGRADED with the step that failed and what to do, CONNECTED again once it
-- heals. `error` keeps the message; these say which step failed and the remedy.
ALTER TABLE federated_cloud_accounts
    ADD COLUMN error_step text,
    ADD COLUMN remedy text,
    ADD COLUMN last_checked_at timestamptz;
