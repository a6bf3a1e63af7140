"""Undoing what a refused enqueue wrote besides its operation row, in the caller's transaction.

When the API commits an operation and then cannot start its workflow, and the workflow provably
never began (`operations.withdraw_unstarted`), the client is told nothing was enqueued; so the
rows its command created with the operation go too, and none is left pointing at an operation
that no longer exists. Each function deletes only what that one enqueue created: rows that
existed before it are left alone.
"""

from __future__ import annotations

from clusterflow.records.db import Conn


async def delete_new_cluster(conn: Conn, cluster_id: str) -> None:
    """A cluster row created by the withdrawn enqueue (deploy, first registration), with its
    registration; kept if any operation still refers to it."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM operations WHERE cluster_id = $1)", cluster_id):
        return
    await conn.execute("DELETE FROM agent_registrations WHERE cluster_id = $1", cluster_id)
    await conn.execute("DELETE FROM clusters WHERE id = $1", cluster_id)


async def delete_kubeconfig_request(conn: Conn, operation_id: str) -> None:
    await conn.execute("DELETE FROM kubeconfigs WHERE operation_id = $1 AND status = 'PENDING'", operation_id)


async def delete_federated_account(conn: Conn, account_id: str) -> None:
    """A GCP or Azure account row: its ID is the withdrawn operation's."""
    await conn.execute("DELETE FROM federated_accounts WHERE id = $1", account_id)


async def release_cloud_account(conn: Conn, operation_id: str) -> None:
    """An AWS account row this connect created (never verified) goes; one verified before stays,
    no longer pointing at the withdrawn operation."""
    await conn.execute("DELETE FROM cloud_accounts WHERE operation_id = $1 AND last_verified_at IS NULL", operation_id)
    await conn.execute("UPDATE cloud_accounts SET operation_id = NULL WHERE operation_id = $1", operation_id)
