"""The Kubernetes manifest that installs the agent in a cluster being registered.

Least privilege: the agent reads what it reports (the API server version, nodes, namespaces),
keeps its own credential in one Secret of its namespace, may mint tokens only for the
read-only `clusterflow-kubeconfig` service account (kubeconfig generation), and may delete
only its own namespace and cluster role objects (unregistration). It needs no inbound port:
it dials out to the control plane. The one-time registration token is in a Secret, mounted as
a file (not an environment variable, which `kubectl describe` shows), never in the pod spec.

What an SRE's admission policies and checkov ask of a workload: liveness and readiness probes
on the agent's health port (ready means connected to the control plane), CPU and memory
requests and limits, a non-root read-only container without capabilities, and a NetworkPolicy
that admits no traffic in and lets out only DNS, the control plane's port (its address too
when the URL names an IP) and the Kubernetes API (443, 6443). The image comes from
`CLUSTERFLOW_AGENT_IMAGE` (`deploy/agent.Dockerfile`, amd64 and arm64); pin it by digest
(`name@sha256:...`), which checkov requires. The one finding left is justified in place: the
agent talks to the Kubernetes API, so its service account token is mounted.
"""

from __future__ import annotations

import base64
import ipaddress
import shlex
from typing import Any
from urllib.parse import urlsplit

import yaml

from clusterflow.agent.health import DEFAULT_PORT as HEALTH_PORT

NAME = "clusterflow-agent"
KUBECONFIG_ACCOUNT = "clusterflow-kubeconfig"
CREDENTIAL_SECRET = "clusterflow-agent-credential"  # noqa: S105 - a Secret object name
REGISTRATION_SECRET = "clusterflow-agent-registration"  # noqa: S105 - a Secret object name
REGISTRATION_MOUNT = "/var/run/clusterflow/registration"
AGENT_UID = 65532
KUBE_API_PORTS = (443, 6443)
"""The `kubernetes` Service's port, and the port most API servers listen on behind it (a
NetworkPolicy sees the endpoint's port after the Service's translation)."""


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
        {"name": "CLUSTERFLOW_REGISTRATION_TOKEN_FILE", "value": f"{REGISTRATION_MOUNT}/token"},
        {"name": "CLUSTERFLOW_AGENT_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "CLUSTERFLOW_CLUSTER_NAME", "value": cluster_name},
        {"name": "CLUSTERFLOW_AGENT_HEALTH_PORT", "value": str(HEALTH_PORT)},
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
            "metadata": _meta(NAME, namespace)
            | {
                "annotations": {
                    "checkov.io/skip1": "CKV_K8S_38=the agent reads nodes and namespaces and keeps its credential "
                    "in a Secret through the Kubernetes API, so it needs its service account token; its RBAC is "
                    "limited to that"
                }
            },
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
                            "runAsUser": AGENT_UID,
                            "runAsGroup": AGENT_UID,
                            "fsGroup": AGENT_UID,  # the mounted token file is readable by the agent's group
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "agent",
                                "image": image,
                                "command": ["clusterflow-agent"],
                                "env": env,
                                "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
                                "livenessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "health"},
                                    "initialDelaySeconds": 5,
                                    "periodSeconds": 20,
                                    "timeoutSeconds": 3,
                                    "failureThreshold": 3,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/readyz", "port": "health"},
                                    "periodSeconds": 10,
                                    "timeoutSeconds": 3,
                                    "failureThreshold": 3,
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "200m", "memory": "256Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [
                                    {"name": "registration", "mountPath": REGISTRATION_MOUNT, "readOnly": True}
                                ],
                            }
                        ],
                        "volumes": [
                            {
                                "name": "registration",
                                # Optional: once registered the agent lives on its credential.
                                "secret": {"secretName": REGISTRATION_SECRET, "optional": True, "defaultMode": 0o440},
                            }
                        ],
                    },
                },
            },
        },
        network_policy(url, namespace),
    ]


def network_policy(url: str, namespace: str) -> dict[str, Any]:
    """Nothing in; out only DNS, the control plane and the Kubernetes API. A NetworkPolicy names
    addresses, not host names, so the control plane is its port (and its address when the URL
    names an IP); an overlay may narrow DNS and the API server to their addresses."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    control_plane: dict[str, Any] = {"ports": [{"port": port, "protocol": "TCP"}]}
    try:
        address = ipaddress.ip_address(parts.hostname or "")
        control_plane["to"] = [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]
    except ValueError:
        pass
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    kube_api = {"ports": [{"port": p, "protocol": "TCP"} for p in KUBE_API_PORTS]}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(NAME, namespace),
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [dns, control_plane, kube_api],
        },
    }


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
