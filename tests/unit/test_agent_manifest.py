"""The agent manifest grants the agent only what it uses, and keeps the token out of the pod spec."""

from __future__ import annotations

import base64
from typing import Any

import yaml

from clusterflow.api.agent_manifest import agent_manifest, install_script, manifest_yaml

TOKEN = "cfreg_test-token"


def _docs() -> list[dict[str, Any]]:
    return agent_manifest(
        cluster_name="edge-1",
        url="https://cp.example.com",
        token=TOKEN,
        architecture="arm64",
        namespace="clusterflow-agent",
        image="example/agent:1",
    )


def _rules(kind: str) -> list[dict[str, Any]]:
    return [rule for doc in _docs() if doc["kind"] == kind for rule in doc["rules"]]


def test_rbac_has_no_wildcards_and_names_what_it_may_change() -> None:
    for rule in _rules("ClusterRole") + _rules("Role"):
        assert "*" not in rule.get("verbs", [])
        assert "*" not in rule.get("resources", [])
        assert "*" not in rule.get("apiGroups", [])
        mutating = set(rule["verbs"]) & {"update", "delete", "patch"}
        if mutating:
            assert rule.get("resourceNames"), f"{rule} may change objects it does not name"
    token_rules = [r for r in _rules("Role") if "serviceaccounts/token" in r["resources"]]
    assert token_rules == [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": ["clusterflow-kubeconfig"],
            "verbs": ["create"],
        }
    ]
    kubeconfig_binding = next(
        d for d in _docs() if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "clusterflow-kubeconfig"
    )
    assert kubeconfig_binding["roleRef"]["name"] == "view"  # kubeconfigs are read-only


def test_the_token_reaches_the_pod_through_a_secret_only() -> None:
    docs = _docs()
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert TOKEN not in yaml.safe_dump(deployment)
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (
        env["CLUSTERFLOW_REGISTRATION_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "clusterflow-agent-registration"
    )
    assert env["CLUSTERFLOW_URL"]["value"] == "https://cp.example.com"
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"]["token"] == TOKEN
    assert deployment["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    assert "ports" not in deployment["spec"]["template"]["spec"]["containers"][0]  # it only dials out


def test_the_install_script_is_one_line_that_applies_the_manifest() -> None:
    manifest = manifest_yaml(_docs())
    script = install_script(manifest)
    assert "\n" not in script
    assert base64.b64decode(script.split()[1]).decode() == manifest
    assert next(d["kind"] for d in yaml.safe_load_all(manifest)) == "Namespace"
