-- Notifications (integrations, subscriptions, an outbox filled in the same transaction as the
-- change it announces, a log of every delivery attempt), and an index for the metrics scrape.

CREATE TABLE notification_integrations (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL REFERENCES organizations(id),
    channel          text NOT NULL CHECK (channel IN ('webhook', 'slack', 'email')),
    enabled          boolean NOT NULL DEFAULT true,
    -- Public settings only (addresses, a masked URL); secrets live in `secret_ciphertext`.
    config           jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- AES-256-GCM (nonce || ciphertext) of a JSON object: the webhook signing secret, the
    -- webhook or Slack URL (a Slack incoming-webhook URL is itself a credential).
    secret_ciphertext bytea,
    created_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, channel)
);

CREATE TABLE notification_subscriptions (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id),
    topic           text NOT NULL,
    channels        text[] NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, topic)
);

CREATE TABLE notification_outbox (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id),
    topic           text NOT NULL,
    subject         text,
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    dispatched_at   timestamptz
);
CREATE INDEX notification_outbox_pending ON notification_outbox (created_at) WHERE dispatched_at IS NULL;

CREATE TABLE notification_deliveries (
    id              bigserial PRIMARY KEY,
    event_id        text NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,
    subscription_id text NOT NULL,
    organization_id text NOT NULL,
    topic           text NOT NULL,
    channel         text NOT NULL,
    attempt         integer NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('DELIVERED', 'RETRYING', 'FAILED', 'SKIPPED')),
    response_status integer,
    error           text,
    duration_ms     integer NOT NULL,
    attempted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_deliveries_subscription ON notification_deliveries (subscription_id, id DESC);

-- /metrics counts operations in flight at every scrape; keep that off the full table.
CREATE INDEX operations_in_flight ON operations (operation_type, status)
    WHERE status IN ('PENDING', 'AWAITING_APPROVAL', 'RUNNING', 'CANCELLING');
