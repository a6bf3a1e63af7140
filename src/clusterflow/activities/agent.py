"""Activities of the registered-cluster operations: they ask the agent, through the database.

The agent's WebSocket lives in whichever API process it dialled; workers cannot reach it. So
each activity writes a request on the registration row (remove yourself, rotate your
credential) or relies on the pending kubeconfig row the API inserted, and the API process
holding the socket forwards it and records the agent's answer. The activity polls for that
answer, heartbeating, so a lost worker or a cancel is noticed within a heartbeat. Requests are
written with COALESCE (first request time wins), so a retried activity asks only once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from clusterflow.contracts.agent import AgentErrorCode, AgentState, AgentStateInput, AgentTaskInput, AgentTaskResult
from clusterflow.records import operations, registrations, secrets_store
from clusterflow.records.db import DbPool

POLL_SECONDS = 0.25


class AgentActivities:
    def __init__(self, pool: DbPool) -> None:
        self.pool = pool

    async def _event(self, inp: AgentTaskInput, key: str, message: str, level: str = "INFO") -> None:
        await operations.append_event(self.pool, inp.operation_id, key, message, kind="progress", level=level)

    async def _registration(self, cluster_id: str) -> registrations.RegistrationRow:
        row = await registrations.get(self.pool, cluster_id)
        if row is None:
            raise ApplicationError(f"cluster {cluster_id} is not registered", type="NOT_REGISTERED", non_retryable=True)
        return row

    @activity.defn(name="registration.connection_state")
    async def connection_state(self, inp: AgentStateInput) -> AgentState:
        row = await self._registration(inp.cluster_id)
        return AgentState(connection_status=row.connection_status, agent_info=row.agent_info or {})

    @activity.defn(name="registration.remove_agent")
    async def remove_agent(self, inp: AgentTaskInput) -> AgentTaskResult:
        row = await self._registration(inp.cluster_id)
        removed = row.agent_removed_at is not None
        if not removed and row.revoked_at is None:
            await registrations.request_uninstall(self.pool, inp.cluster_id)
            if row.connection_status == registrations.ConnectionStatus.CONNECTED:
                await self._event(inp, "agent/uninstall-requested", "asked the agent to remove itself from the cluster")
                removed = await self._wait(inp, lambda r: r.agent_removed_at is not None, inp.timeout_seconds)
        if removed:
            await self._event(inp, "agent/removed", "the agent removed itself from the cluster")
            message = f"{inp.cluster_name} unregistered; the agent removed itself and its credential is revoked"
        else:
            await self._event(
                inp,
                "agent/not-removed",
                "the agent did not confirm its removal (it is not connected): delete its namespace and "
                "cluster role by hand (kubectl delete ns clusterflow-agent; kubectl delete clusterrole,"
                "clusterrolebinding -l app.kubernetes.io/name=clusterflow-agent)",
                level="WARN",
            )
            message = f"{inp.cluster_name} unregistered; its credential is revoked, the agent must be removed by hand"
        async with self.pool.acquire() as conn:
            await registrations.revoke(conn, inp.cluster_id, "agent revoked by unregistration")
        return AgentTaskResult(message, {"agentRemoved": removed})

    @activity.defn(name="registration.rotate_credential")
    async def rotate_credential(self, inp: AgentTaskInput) -> AgentTaskResult:
        row = await self._registration(inp.cluster_id)
        if row.revoked_at is not None:
            raise ApplicationError("the agent is revoked", type="AGENT_REVOKED", non_retryable=True)
        if row.connection_status != registrations.ConnectionStatus.CONNECTED:
            raise ApplicationError(
                f"the agent of {inp.cluster_name} is {row.connection_status}; resync needs it connected",
                type=AgentErrorCode.AGENT_NOT_CONNECTED,
                non_retryable=True,
            )
        before = row.credential_issued_at
        await registrations.request_rotation(self.pool, inp.cluster_id)
        await self._event(inp, "credential/rotation-requested", "asked the agent to rotate its credential")
        done = await self._wait(
            inp,
            lambda r: r.rotation_requested_at is None and r.credential_issued_at != before,
            inp.timeout_seconds,
        )
        if not done:
            raise ApplicationError(
                f"the agent did not confirm the new credential within {int(inp.timeout_seconds)}s",
                type=AgentErrorCode.AGENT_TIMED_OUT,
                non_retryable=True,
            )
        await self._event(inp, "credential/rotated", "the agent stored its new credential; the old one is revoked")
        return AgentTaskResult(
            f"{inp.cluster_name} resynchronized: agent credential rotated", {"credentialRotated": True}
        )

    @activity.defn(name="registration.withdraw")
    async def withdraw(self, inp: AgentTaskInput) -> None:
        """Undo what a cancelled operation asked of the agent: a pending kubeconfig request fails
        (rather than answering 202 forever, or being filled in later), and an unregistration's
        removal request is withdrawn if the agent has not acted on it yet."""
        await secrets_store.fail_kubeconfig(self.pool, inp.operation_id, "cancelled")
        await registrations.withdraw_uninstall(self.pool, inp.cluster_id)

    @activity.defn(name="kubeconfig.await_ready")
    async def await_kubeconfig(self, inp: AgentTaskInput) -> AgentTaskResult:
        await self._event(inp, "kubeconfig/requested", "waiting for the agent to issue a service-account token")
        deadline = time.monotonic() + inp.timeout_seconds
        while True:
            row = await secrets_store.kubeconfig(self.pool, inp.operation_id)
            if row is None:
                raise ApplicationError("no kubeconfig request", type="UNKNOWN_OPERATION", non_retryable=True)
            if row.status == "READY":
                assert row.expires_at is not None  # store_kubeconfig sets it with READY
                expires = row.expires_at.isoformat()
                return AgentTaskResult(
                    f"kubeconfig for {inp.cluster_name} is ready; it expires at {expires}", {"expiresAt": expires}
                )
            if row.status == "FAILED":
                raise ApplicationError(row.error or "", type=AgentErrorCode.KUBECONFIG_FAILED, non_retryable=True)
            if time.monotonic() > deadline:
                await secrets_store.fail_kubeconfig(self.pool, inp.operation_id, "the agent did not answer in time")
                raise ApplicationError(
                    f"the agent of {inp.cluster_name} did not issue a kubeconfig within {int(inp.timeout_seconds)}s",
                    type=AgentErrorCode.AGENT_TIMED_OUT,
                    non_retryable=True,
                )
            activity.heartbeat("waiting for the agent")
            await asyncio.sleep(POLL_SECONDS)

    async def _wait(
        self, inp: AgentTaskInput, done: Callable[[registrations.RegistrationRow], bool], timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            row = await self._registration(inp.cluster_id)
            if done(row):
                return True
            if time.monotonic() > deadline:
                return False
            activity.heartbeat("waiting for the agent")
            await asyncio.sleep(POLL_SECONDS)


async def run_agent_monitor(pool: DbPool, window_seconds: float, interval_seconds: float) -> None:
    """Mark agents whose heartbeats stopped DISCONNECTED; every worker runs this loop."""
    import logging

    log = logging.getLogger(__name__)
    while True:
        try:
            for cluster_id in await registrations.expire_silent_agents(pool, window_seconds):
                log.warning("agent of cluster %s missed its heartbeats: DISCONNECTED", cluster_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # the next pass retries; one bad pass must not stop the loop
            log.exception("agent monitor pass failed")
        await asyncio.sleep(interval_seconds)
