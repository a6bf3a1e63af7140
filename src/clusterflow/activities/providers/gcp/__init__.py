"""The `gcp` provider: GKE clusters through `google-cloud-container` (REST transport).

One module per concept: `clients` (credentials, endpoint), `errors` (the one classification of
GKE failures), `session` (calls, operations, waiting), `spec` (the catalog check),
`control_plane`, `node_pools`, the `provider` that ties them into phases, `connect` (the
federation check), `credentials` and `kubeconfig` (what a connected account is issued). This
package re-exports what the rest of the code base and the tests use.
"""

from clusterflow.activities.providers.gcp.clients import gcp_credentials
from clusterflow.activities.providers.gcp.connect import GcpConnectCheck
from clusterflow.activities.providers.gcp.credentials import GcpCredentialActivities
from clusterflow.activities.providers.gcp.errors import classify_google_error
from clusterflow.activities.providers.gcp.kubeconfig import GcpKubeconfigActivities
from clusterflow.activities.providers.gcp.provider import GcpProvider
from clusterflow.activities.providers.gcp.spec import OWNER_LABEL

__all__ = [
    "OWNER_LABEL",
    "GcpConnectCheck",
    "GcpCredentialActivities",
    "GcpKubeconfigActivities",
    "GcpProvider",
    "classify_google_error",
    "gcp_credentials",
]
