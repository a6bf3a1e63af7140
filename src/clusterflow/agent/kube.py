"""What the agent does in its cluster, through the official `kubernetes` client.

The client is synchronous (urllib3); the agent calls it from a thread so its WebSocket keeps
heartbeating. Configuration is the in-cluster service account when running in a pod
(`KUBERNETES_SERVICE_HOST` set), else `KUBECONFIG` (or ~/.kube/config).
"""

from __future__ import annotations

import base64
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

AGENT_NAME = "clusterflow-agent"
CREDENTIAL_SECRET = "clusterflow-agent-credential"  # noqa: S105 - a Secret object name
KUBECONFIG_ACCOUNT = "clusterflow-kubeconfig"
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class IssuedToken:
    token: str
    expires_at: str | None
    server: str
    certificate_authority_data: str | None


class Cluster:
    def __init__(self, namespace: str | None = None) -> None:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            self.api = client.ApiClient()
        else:
            self.api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
        self.core = client.CoreV1Api(self.api)
        self.namespace = namespace or _default_namespace()

    def report(self) -> dict[str, Any]:
        """Kubernetes version, node and namespace counts, dominant architecture, region if labelled."""
        version = client.VersionApi(self.api).get_code()
        nodes = self.core.list_node().items
        architectures = Counter(
            (n.status.node_info.architecture if n.status and n.status.node_info else None) or "unknown" for n in nodes
        )
        regions = {
            (n.metadata.labels or {}).get("topology.kubernetes.io/region") for n in nodes if n.metadata is not None
        } - {None}
        namespaces = self.core.list_namespace().items
        return {
            "kubernetesVersion": version.git_version.lstrip("v"),
            "nodeCount": len(nodes),
            "namespaceCount": len(namespaces),
            "architecture": architectures.most_common(1)[0][0] if nodes else None,
            "region": next(iter(regions)) if len(regions) == 1 else None,
        }

    # --- the credential, kept in a Secret so a restarted pod reconnects without a new token --

    def load_credential(self) -> str | None:
        try:
            secret = self.core.read_namespaced_secret(CREDENTIAL_SECRET, self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        value = (secret.data or {}).get("credential")
        return base64.b64decode(value).decode() if value else None

    def store_credential(self, credential: str) -> None:
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=CREDENTIAL_SECRET, labels={"app.kubernetes.io/name": AGENT_NAME}),
            type="Opaque",
            string_data={"credential": credential},
        )
        try:
            self.core.replace_namespaced_secret(CREDENTIAL_SECRET, self.namespace, body)
        except ApiException as err:
            if err.status != 404:
                raise
            self.core.create_namespaced_secret(self.namespace, body)

    # --- kubeconfig tokens -------------------------------------------------------------------

    def issue_token(self, expiration_seconds: int) -> IssuedToken:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        response = self.core.create_namespaced_service_account_token(KUBECONFIG_ACCOUNT, self.namespace, request)
        configuration = self.api.configuration
        ca_data = None
        if configuration.ssl_ca_cert:
            ca_data = base64.b64encode(Path(configuration.ssl_ca_cert).read_bytes()).decode()
        expires = response.status.expiration_timestamp
        return IssuedToken(
            token=response.status.token,
            expires_at=expires.isoformat() if expires is not None else None,
            server=configuration.host,
            certificate_authority_data=ca_data,
        )

    # --- removal -----------------------------------------------------------------------------

    def uninstall(self) -> None:
        """Delete the agent's cluster-wide RBAC, then its namespace (which holds everything else,
        this pod included); what is already gone counts as removed."""
        rbac = client.RbacAuthorizationV1Api(self.api)
        steps: list[tuple[Callable[[str], Any], str]] = [
            (rbac.delete_cluster_role_binding, KUBECONFIG_ACCOUNT),
            (rbac.delete_cluster_role_binding, AGENT_NAME),
            (rbac.delete_cluster_role, AGENT_NAME),
            (self.core.delete_namespace, self.namespace),
        ]
        for delete, name in steps:
            try:
                delete(name)
            except ApiException as err:
                if err.status != 404:
                    raise


def _default_namespace() -> str:
    if SERVICE_ACCOUNT_NAMESPACE_FILE.exists():
        return SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
    return AGENT_NAME
