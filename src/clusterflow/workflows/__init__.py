"""Workflows: one module per operation type, and the contracts they share with their callers.

Nothing here performs I/O; an import contract (import-linter) keeps asyncpg, cloud SDKs and the
API out. Every side effect is an activity in `clusterflow.activities`.
"""
