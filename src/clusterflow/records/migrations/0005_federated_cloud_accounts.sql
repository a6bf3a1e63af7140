-- Cloud accounts connected through federation (GCP Workload Identity Federation, Azure
-- federated identity credentials). No secret is stored: the customer's cloud trusts this
-- control plane's OIDC tokens for the account's subject. `id` is the CLOUD_CONNECT operation.
CREATE TABLE federated_cloud_accounts (
    -- Deferred: the row is written in the transaction that then inserts its operation.
    id              text PRIMARY KEY REFERENCES operations(id) DEFERRABLE INITIALLY DEFERRED,
    organization_id text NOT NULL REFERENCES organizations(id),
    provider        text NOT NULL CHECK (provider IN ('gcp', 'azure')),
    cluster_name    text NOT NULL,
    level           text NOT NULL,
    status          text NOT NULL,
    -- What the caller asked for (project, region, subscription, resource group...).
    params          jsonb NOT NULL,
    -- Who we act as once connected: service account email, pool and provider; tenant and
    -- client ID (reported by the setup script).
    identity        jsonb NOT NULL DEFAULT '{}'::jsonb,
    script          text NOT NULL,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    connected_at    timestamptz
);

CREATE INDEX federated_cloud_accounts_by_cluster
    ON federated_cloud_accounts (organization_id, provider, cluster_name, created_at DESC);
