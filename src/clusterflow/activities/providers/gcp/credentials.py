"""`gcp.issue_credentials`: a short-lived access token of the connected service account.

Through Workload Identity Federation and IAM Credentials `generateAccessToken`, for the
lifetime asked (clouds cap it at an hour), sealed to the requesting API process. What the GCP
and Azure credential activities share is in `activities/federated_credentials.py`.
"""

from __future__ import annotations

from temporalio import activity

from clusterflow.activities import federation
from clusterflow.activities.federated_credentials import (
    FederatedCredentialActivities,
    connected_account,
    exchange_failed,
    sealed,
)
from clusterflow.contracts.cloud_accounts import IssueCredentialsInput, IssueCredentialsResult


class GcpCredentialActivities(FederatedCredentialActivities):
    @activity.defn(name="gcp.issue_credentials")
    async def issue_gcp(self, inp: IssueCredentialsInput) -> IssueCredentialsResult:
        row = await connected_account(self.pool, inp, "gcp")
        identity = dict(row.identity)
        lifetime = federation.lifetime_seconds(inp.duration_seconds)
        try:
            token = await federation.gcp_access_token(self.settings, inp.organization_id, row.id, identity, lifetime)
        except federation.ExchangeFailed as err:
            raise exchange_failed(err) from err
        return sealed(
            inp,
            {
                "accessToken": token.access_token,
                "expiration": token.expiration,
                "projectId": identity["projectId"],
                "serviceAccountEmail": identity["serviceAccountEmail"],
            },
        )
