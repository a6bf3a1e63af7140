-- Fleet update runs (issue 18). A run is an operation (type UPDATE_RUN); this table holds what
-- only a run has: the request as accepted, the resolved plan, and the state the run's workflow
-- writes as it goes (stages, groups, gates and children with status).
CREATE TABLE update_runs (
    -- Deferred: the API writes the run's rows and its operation row in one transaction.
    -- Cascade: history retention that removes the run's operation removes its plan with it.
    operation_id    text PRIMARY KEY REFERENCES operations(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    organization_id text NOT NULL REFERENCES organizations(id),
    name            text NOT NULL,
    request         jsonb NOT NULL,
    plan            jsonb NOT NULL,
    snapshot        jsonb,
    status          text NOT NULL DEFAULT 'PENDING',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX update_runs_org ON update_runs (organization_id, operation_id DESC);

-- One row per cluster the run will update, planned at enqueue. `operation_id` is the ID of the
-- cluster's CLUSTER_UPDATE operation, chosen when the run is planned: opening the operation is
-- keyed by (run, cluster), so a worker killed around it can never create or start it twice.
CREATE TABLE update_run_clusters (
    run_id          text NOT NULL REFERENCES update_runs(operation_id) ON DELETE CASCADE,
    cluster_id      text NOT NULL REFERENCES clusters(id),
    cluster_name    text NOT NULL,
    stage           text NOT NULL,
    group_name      text NOT NULL,
    position        integer NOT NULL,
    operation_id    text NOT NULL UNIQUE,
    planned_version text,
    target_version  text NOT NULL,
    update_input    jsonb NOT NULL,
    PRIMARY KEY (run_id, cluster_id)
);

-- Saved strategies (`/v1/update-strategies`): a strategy document reused by name or ID, as
-- Fleet Manager keeps update strategies. A run copies the strategy into its request when it
-- is planned, so changing or deleting a saved strategy never changes a run already made.
CREATE TABLE update_strategies (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id),
    name            text NOT NULL,
    strategy        jsonb NOT NULL,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);
