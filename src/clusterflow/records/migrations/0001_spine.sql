-- The spine: organizations, API keys, clusters, operations and their event log, idempotency
-- keys, and the local provider's simulated cloud.

CREATE TABLE organizations (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    approval_policy jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id),
    name            text NOT NULL,
    -- The lookup prefix is public (it is shown masked in listings); the secret is only hashed.
    key_prefix      text NOT NULL UNIQUE,
    key_hash        bytea NOT NULL,
    role            text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin', 'owner')),
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    revoke_reason   text,
    last_used_at    timestamptz
);
CREATE INDEX api_keys_org ON api_keys (organization_id);

CREATE TABLE clusters (
    id                 text PRIMARY KEY,
    organization_id    text NOT NULL REFERENCES organizations(id),
    name               text NOT NULL,
    provider           text NOT NULL,
    provisioner_type   text NOT NULL,
    region             text NOT NULL,
    kubernetes_version text,
    state              text NOT NULL,
    spec               jsonb NOT NULL,
    control_plane      jsonb,
    worker_nodes       jsonb NOT NULL DEFAULT '[]'::jsonb,
    upgrade_status     jsonb,
    rollback_status    jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);
-- A name is taken while its cluster exists; a deleted cluster's name can be reused.
CREATE UNIQUE INDEX clusters_live_name ON clusters (organization_id, name) WHERE state <> 'DELETED';
CREATE INDEX clusters_org ON clusters (organization_id, id);

CREATE TABLE operations (
    id                  text PRIMARY KEY,
    organization_id     text NOT NULL REFERENCES organizations(id),
    cluster_id          text REFERENCES clusters(id),
    cluster_name        text,
    operation_type      text NOT NULL,
    status              text NOT NULL,
    current_phase       text,
    progress_percentage integer NOT NULL DEFAULT 0,
    message             text,
    error               jsonb,
    attempt             integer NOT NULL DEFAULT 1,
    requested_by        text,
    idempotency_key     text,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    result              jsonb,
    -- The operation row is its own outbox: what to start, and whether it was started.
    workflow_type       text NOT NULL,
    workflow_input      jsonb NOT NULL,
    workflow_started_at timestamptz,
    event_count         bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    last_update         timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz
);
-- One operation at a time per cluster: the database holds the lock, race-free, as a partial
-- unique index over the non-terminal statuses. A conflicting insert fails with a unique
-- violation that the repository turns into "cluster busy" naming the active operation.
CREATE UNIQUE INDEX operations_one_active_per_cluster ON operations (cluster_id)
    WHERE status IN ('PENDING', 'AWAITING_APPROVAL', 'RUNNING', 'CANCELLING');
CREATE INDEX operations_org ON operations (organization_id, id DESC);
CREATE INDEX operations_cluster ON operations (cluster_id, id DESC);
CREATE INDEX operations_unstarted ON operations (created_at) WHERE workflow_started_at IS NULL AND status = 'PENDING';

CREATE TABLE operation_events (
    operation_id        text NOT NULL REFERENCES operations(id),
    sequence            bigint NOT NULL,
    -- Deterministic key of what happened ("NETWORK/started", "NETWORK/attempt-2/failed"):
    -- a retried activity that reports the same fact again is a no-op.
    event_key           text NOT NULL,
    kind                text NOT NULL,
    timestamp           timestamptz NOT NULL DEFAULT clock_timestamp(),
    level               text NOT NULL,
    phase               text,
    progress_percentage integer,
    message             text NOT NULL,
    raw_output          text,
    labels              jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (operation_id, sequence),
    UNIQUE (operation_id, event_key)
);

-- Appends one event with the next sequence number and updates the operation's live fields.
-- The row lock on the operation serializes appends, so sequences are contiguous (no gaps, no
-- duplicates) even when activities on several workers report at once; the event key makes a
-- replayed append return the first sequence instead of writing twice. NOTIFY carries IDs only.
CREATE FUNCTION append_operation_event(
    p_operation_id text, p_event_key text, p_kind text, p_level text, p_phase text,
    p_progress integer, p_message text, p_raw_output text, p_labels jsonb
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_sequence bigint;
BEGIN
    PERFORM 1 FROM operations WHERE id = p_operation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown operation %', p_operation_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT sequence INTO v_sequence FROM operation_events
     WHERE operation_id = p_operation_id AND event_key = p_event_key;
    IF FOUND THEN
        RETURN v_sequence;
    END IF;
    UPDATE operations
       SET event_count = event_count + 1,
           current_phase = COALESCE(p_phase, current_phase),
           progress_percentage = GREATEST(progress_percentage, COALESCE(p_progress, 0)),
           message = p_message,
           last_update = now()
     WHERE id = p_operation_id
     RETURNING event_count INTO v_sequence;
    INSERT INTO operation_events (operation_id, sequence, event_key, kind, level, phase,
                                  progress_percentage, message, raw_output, labels)
    VALUES (p_operation_id, v_sequence, p_event_key, p_kind, p_level, p_phase,
            p_progress, p_message, p_raw_output, COALESCE(p_labels, '{}'::jsonb));
    PERFORM pg_notify('cf_operation_events', p_operation_id || ':' || v_sequence);
    RETURN v_sequence;
END;
$$;

CREATE TABLE idempotency_keys (
    organization_id text NOT NULL REFERENCES organizations(id),
    key             text NOT NULL,
    method          text NOT NULL,
    path            text NOT NULL,
    request_hash    bytea NOT NULL,
    status_code     integer NOT NULL,
    response        jsonb NOT NULL,
    headers         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, key)
);

-- The local provider's "cloud": each simulated resource, and a log of every mutating call it
-- received, which is what tests count to prove side effects happen exactly once.
CREATE TABLE local_resources (
    cluster_id   text NOT NULL,
    kind         text NOT NULL,
    name         text NOT NULL,
    state        text NOT NULL,
    spec         jsonb NOT NULL DEFAULT '{}'::jsonb,
    ready_at     timestamptz NOT NULL,
    operation_id text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (cluster_id, kind, name)
);

CREATE TABLE local_api_calls (
    id           bigserial PRIMARY KEY,
    cluster_id   text NOT NULL,
    kind         text NOT NULL,
    name         text NOT NULL,
    action       text NOT NULL,
    operation_id text NOT NULL,
    called_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX local_api_calls_cluster ON local_api_calls (cluster_id);
