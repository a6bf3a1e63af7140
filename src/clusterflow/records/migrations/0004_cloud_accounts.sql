-- Cloud accounts an organization connected (AWS today): which role we assume in the customer's
-- account and the ExternalId that guards it. Credentials are never stored, only how to obtain
-- them; every use assumes the role again.

-- One ExternalId per organization and cloud: the confused-deputy guard of every role that
-- trusts the platform. Generated once, never shown to another organization.
CREATE TABLE cloud_external_ids (
    organization_id text NOT NULL REFERENCES organizations(id),
    provider        text NOT NULL,
    external_id     text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, provider)
);

CREATE TABLE cloud_accounts (
    id                text PRIMARY KEY,
    organization_id   text NOT NULL REFERENCES organizations(id),
    provider          text NOT NULL,
    account_id        text NOT NULL,
    cluster_name      text NOT NULL,
    level             text NOT NULL CHECK (level IN ('read', 'manage')),
    region            text NOT NULL,
    role_name         text NOT NULL,
    role_arn          text NOT NULL,
    session_seconds   integer NOT NULL,
    -- WAITING_FOR_ROLE -> CONNECTED <-> DEGRADED, or FAILED when a connect gives up.
    status            text NOT NULL,
    -- The latest CLOUD_CONNECT operation of this account (deferred: the API writes the
    -- account and then the operation in one transaction).
    operation_id      text REFERENCES operations(id) DEFERRABLE INITIALLY DEFERRED,
    template_url      text,
    error             jsonb,
    last_checked_at   timestamptz,
    last_verified_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, provider, account_id)
);
CREATE INDEX cloud_accounts_status ON cloud_accounts (provider, status);
