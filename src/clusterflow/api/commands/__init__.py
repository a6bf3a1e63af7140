"""One command object per kind of operation: what a route asks `api/enqueue.py` to enqueue.

A command is built by its route from the `OperationContext` and the request's own inputs. Its
`prepare(conn)` runs in `enqueue`'s transaction, after the idempotency check: it locks and reads
what the operation acts on, refuses with an `ApiError`, writes what must exist with the operation
(a cluster row, an account row) and returns the `OperationPlan` (the typed workflow input, the
approval, the metadata). `abandon(conn)` undoes those writes if the workflow provably never
started.

- `deploy.py`: CLUSTER_DEPLOY (and the deploy checks its dry run shares)
- `update.py`: CLUSTER_UPDATE (and the update planning its dry run and report share)
- `delete.py`: CLUSTER_DELETE
- `register.py`: CLUSTER_REGISTER
- `agent_tasks.py`: the operations a registered cluster's agent carries out (unregister,
  kubeconfig, resync)
- `connect.py`: CLOUD_CONNECT for AWS, GCP and Azure
"""
