"""The Kubernetes manifest that installs the agent in a cluster being registered.

Least privilege: the agent reads what it reports (the API server version, nodes, namespaces),
keeps its own credential in one Secret of its namespace, may mint tokens only for the
read-only `clusterflow-kubeconfig` service account (kubeconfig generation), and may delete
only its own namespace and cluster role objects (unregistration). It needs no inbound port:
it dials out to the control plane. The one-time registration token is in a Secret, read by
the Deployment through `secretKeyRef`, never in the pod spec.
"""

from __future__ import annotations

import base64
import shlex
from typing import Any

import yaml

NAME = "clusterflow-agent"
KUBECONFIG_ACCOUNT = "clusterflow-kubeconfig"
CREDENTIAL_SECRET = "clusterflow-agent-credential"  # noqa: S105 - a Secret object name
REGISTRATION_SECRET = "clusterflow-agent-registration"  # noqa: S105 - a Secret object name


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "clusterflow"},
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def agent_manifest(
    *, cluster_name: str, url: str, token: str, architecture: str, namespace: str, image: str
) -> list[dict[str, Any]]:
    cluster_rules = [
        {"apiGroups": [""], "resources": ["nodes", "namespaces"], "verbs": ["get", "list"]},
        {"nonResourceURLs": ["/version"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [namespace], "verbs": ["delete"]},
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles", "clusterrolebindings"],
            "resourceNames": [NAME, KUBECONFIG_ACCOUNT],
            "verbs": ["delete"],
        },
    ]
    namespace_rules = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [CREDENTIAL_SECRET, REGISTRATION_SECRET],
            "verbs": ["get", "update", "delete"],
        },
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": [KUBECONFIG_ACCOUNT],
            "verbs": ["create"],
        },
    ]
    env = [
        {"name": "CLUSTERFLOW_URL", "value": url},
        {
            "name": "CLUSTERFLOW_REGISTRATION_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": REGISTRATION_SECRET, "key": "token"}},
        },
        {"name": "CLUSTERFLOW_AGENT_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "CLUSTERFLOW_CLUSTER_NAME", "value": cluster_name},
    ]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(namespace)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, namespace)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(NAME),
            "rules": cluster_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(NAME),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(NAME, namespace),
            "rules": namespace_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(NAME, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(KUBECONFIG_ACCOUNT, namespace)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(KUBECONFIG_ACCOUNT),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": KUBECONFIG_ACCOUNT, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(REGISTRATION_SECRET, namespace),
            "type": "Opaque",
            "stringData": {"token": token},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(NAME, namespace),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": NAME}},
                    "spec": {
                        "serviceAccountName": NAME,
                        "nodeSelector": {"kubernetes.io/arch": architecture, "kubernetes.io/os": "linux"},
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "agent",
                                "image": image,
                                "command": ["clusterflow-agent"],
                                "env": env,
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"memory": "256Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


def manifest_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def install_script(manifest: str) -> str:
    """One line that applies the manifest: it travels inside the line (base64), so installing
    needs no call back to the control plane and no second credential to fetch it. It runs in its
    own `bash -euo pipefail` (whatever the user's shell) and decodes the whole manifest before
    `kubectl` sees any of it, so a truncated or mangled paste fails with a message and applies
    nothing."""
    encoded = base64.b64encode(manifest.encode()).decode()
    inner = (
        f"manifest=$(printf %s {encoded} | base64 -d) || "
        "{ echo 'clusterflow: the manifest did not decode; copy the whole install line again' >&2; exit 1; }; "
        "printf '%s\\n' \"${manifest}\" | kubectl apply -f -"
    )
    return f"bash -euo pipefail -c {shlex.quote(inner)}"
