-- Registered clusters: the agent's registration (one-time token, long-lived credential, both
-- only hashed), its connection health and the history of its changes, generated kubeconfigs
-- (encrypted), and the self-hosted credentials vault (encrypted, key ID kept for rotation).

CREATE TABLE agent_registrations (
    cluster_id             text PRIMARY KEY REFERENCES clusters(id),
    organization_id        text NOT NULL REFERENCES organizations(id),
    architecture           text NOT NULL,
    register_operation_id  text,
    -- One-time registration token: usable once, until it expires.
    token_hash             bytea NOT NULL UNIQUE,
    token_expires_at       timestamptz NOT NULL,
    token_used_at          timestamptz,
    -- Long-lived agent credential issued in exchange for the token; rotated by a resync.
    credential_hash        bytea UNIQUE,
    -- During a rotation the new credential is valid too, until the agent confirms it stored it.
    pending_credential_hash bytea UNIQUE,
    credential_issued_at   timestamptz,
    rotation_requested_at  timestamptz,
    connection_status      text NOT NULL DEFAULT 'NEVER_CONNECTED'
                           CHECK (connection_status IN ('NEVER_CONNECTED', 'CONNECTED', 'DISCONNECTED')),
    -- The live socket (one API process holds it); a stale socket closing must not mark the
    -- agent disconnected after it has reconnected elsewhere.
    connection_id          text,
    connected_at           timestamptz,
    last_heartbeat_at      timestamptz,
    agent_info             jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Unregistration: the agent is asked to remove itself, then its credential is revoked.
    uninstall_requested_at timestamptz,
    agent_removed_at       timestamptz,
    revoked_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_registrations_connected ON agent_registrations (last_heartbeat_at)
    WHERE connection_status = 'CONNECTED';

CREATE TABLE agent_connection_events (
    id          bigserial PRIMARY KEY,
    cluster_id  text NOT NULL REFERENCES clusters(id),
    timestamp   timestamptz NOT NULL DEFAULT clock_timestamp(),
    status      text NOT NULL,
    message     text NOT NULL
);
CREATE INDEX agent_connection_events_cluster ON agent_connection_events (cluster_id, id);

CREATE TABLE kubeconfigs (
    -- Deferred: the request is inserted in the transaction that inserts its operation, first.
    operation_id       text PRIMARY KEY REFERENCES operations(id) DEFERRABLE INITIALLY DEFERRED,
    organization_id    text NOT NULL REFERENCES organizations(id),
    cluster_id         text NOT NULL REFERENCES clusters(id),
    status             text NOT NULL CHECK (status IN ('PENDING', 'READY', 'FAILED')),
    duration_seconds   bigint NOT NULL,
    key_id             text,
    nonce              bytea,
    ciphertext         bytea,
    error              text,
    expires_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    ready_at           timestamptz
);
CREATE INDEX kubeconfigs_cluster ON kubeconfigs (cluster_id, created_at DESC);

CREATE TABLE vault_credentials (
    organization_id text NOT NULL REFERENCES organizations(id),
    cluster_name    text NOT NULL,
    provider        text NOT NULL,
    account_id      text NOT NULL,
    region          text NOT NULL,
    bucket_name     text NOT NULL,
    key_id          text NOT NULL,
    nonce           bytea NOT NULL,
    ciphertext      bytea NOT NULL,
    status          text NOT NULL,
    last_validated  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, cluster_name)
);
