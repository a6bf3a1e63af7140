"""The `aws` provider: EKS clusters through boto3, in the customer's connected account.

One module per concept: `clients` (sessions, clients, `aws_call`, request tokens), `errors`
(the one classification of AWS failures), `steps` (what every step shares), `network`, `iam`,
`control_plane`, `node_groups`, `addons`, `updates` (an update's VALIDATE against EKS), the
`provider` that ties them into phases, `connect` (the account connection handshake and
temporary credentials) and `kubeconfig`. This package re-exports what the rest of the code
base and the tests use.
"""

from clusterflow.activities.providers.aws.clients import (
    AwsClients,
    AwsCredentials,
    SessionFactory,
    aws_call,
    default_session_factory,
    new_session,
    request_token,
)
from clusterflow.activities.providers.aws.connect import AwsCloudConnect
from clusterflow.activities.providers.aws.errors import classify
from clusterflow.activities.providers.aws.kubeconfig import (
    EKS_TOKEN_PREFIX,
    AwsKubeconfigActivities,
    eks_kubeconfig,
    eks_token,
)
from clusterflow.activities.providers.aws.provider import AwsProvider

__all__ = [
    "EKS_TOKEN_PREFIX",
    "AwsClients",
    "AwsCloudConnect",
    "AwsCredentials",
    "AwsKubeconfigActivities",
    "AwsProvider",
    "SessionFactory",
    "aws_call",
    "classify",
    "default_session_factory",
    "eks_kubeconfig",
    "eks_token",
    "new_session",
    "request_token",
]
