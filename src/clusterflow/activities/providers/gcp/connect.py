"""Cloud connect for GCP: does federation with the customer's project work yet?

The check tries the exchange the provider will later rely on: STS token exchange against the
account's Workload Identity pool provider, then impersonation of its service account through
IAM Credentials. What the GCP and Azure checks share is in `activities/federated_connect.py`.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from clusterflow.activities.federated_connect import FederatedConnectCheck, account_row, not_yet
from clusterflow.activities.providers.gcp.clients import gcp_credentials
from clusterflow.workflows.federated_connect import ConnectCheckInput, ConnectCheckResult


class GcpConnectCheck(FederatedConnectCheck):
    @activity.defn(name="federated_connect.check_gcp")
    async def check_gcp(self, inp: ConnectCheckInput) -> ConnectCheckResult:
        from google.auth import exceptions as gauth_exceptions
        from google.auth.transport.requests import Request

        row = await account_row(self.pool, inp.account_id)
        identity = dict(row.identity)
        credentials = gcp_credentials(self.settings, row.organization_id, inp.account_id, identity)
        try:
            await asyncio.to_thread(credentials.refresh, Request())
        except gauth_exceptions.GoogleAuthError as err:
            raise not_yet(f"impersonating {identity['serviceAccountEmail']} does not work yet: {err}") from err
        return ConnectCheckResult(identity={k: identity[k] for k in ("serviceAccountEmail", "projectId")})
