"""The `azure` provider: AKS clusters through `azure-identity` and `azure-mgmt-containerservice`.

One module per concept: `clients` (credentials, endpoints), `errors` (the one classification of
ARM failures), `session` (calls, pollers, waiting), `spec` (the typed cluster as AKS sees it and
the deploy spec check), `control_plane` (the managed cluster), `cluster_update` (an update's
checks and control-plane changes), `agent_pools`, the `provider` that ties them into phases,
`connect` (the federation check), `credentials` and `kubeconfig` (what a connected account is
issued). This package re-exports
what the rest of the code base and the tests use.
"""

from clusterflow.activities.providers.azure.clients import azure_credential
from clusterflow.activities.providers.azure.connect import AzureConnectCheck
from clusterflow.activities.providers.azure.credentials import AzureCredentialActivities
from clusterflow.activities.providers.azure.errors import classify_azure_error
from clusterflow.activities.providers.azure.kubeconfig import AzureKubeconfigActivities
from clusterflow.activities.providers.azure.provider import AzureProvider
from clusterflow.activities.providers.azure.spec import OWNER_TAG, aks_settings

__all__ = [
    "OWNER_TAG",
    "AzureConnectCheck",
    "AzureCredentialActivities",
    "AzureKubeconfigActivities",
    "AzureProvider",
    "aks_settings",
    "azure_credential",
    "classify_azure_error",
]
