-- Tenancy and security: members, key revocation details, the audit log, and the registry of
-- live API processes that rate limits divide by.

CREATE TABLE members (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id),
    email           text NOT NULL,
    name            text,
    role            text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin', 'owner')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, email)
);

ALTER TABLE api_keys
    ADD COLUMN revoked_by text,
    ADD COLUMN source     text NOT NULL DEFAULT 'api';

CREATE TABLE audit_events (
    id              text PRIMARY KEY,
    organization_id text REFERENCES organizations(id),
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    event_type      text NOT NULL,
    action          text NOT NULL,
    resource        text NOT NULL,
    resource_id     text,
    actor           text,
    actor_role      text,
    request_id      text,
    ip_address      text,
    user_agent      text,
    success         boolean NOT NULL,
    status_code     integer NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_org_time ON audit_events (organization_id, occurred_at DESC, id DESC);

CREATE TABLE api_instances (
    id           text PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
