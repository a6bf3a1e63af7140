-- Cluster labels: clusterflow's own key/value metadata on a cluster (Kubernetes label rules,
-- contracts/labels.py), distinct from `tags`, which the provisioner writes onto cloud resources.
-- `GET /v1/clusters?labelSelector=` translates to `@>` and `?` on this column
-- (records/clusters.py), which the GIN index (default jsonb_ops: both operators) answers.
ALTER TABLE clusters ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX clusters_labels ON clusters USING gin (labels);
