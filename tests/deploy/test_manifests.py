"""The deployment definitions hold up offline: every rendered manifest validates against the
Kubernetes schemas, keeps the production rules we promise (non-root, read-only root, probes,
disruption budget, autoscaling, a worker grace period longer than its shutdown timeout), and
passes checkov's Kubernetes and Dockerfile checks, each remaining skip justified in place."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.checkov import checkov_binary, run_checkov
from tests.deploy.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"
OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "example"
KUBERNETES_VERSION = "1.32"


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_every_rendered_manifest_is_valid(directory: Path) -> None:
    docs = render(directory)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_the_test_renderer_agrees_with_kustomize(directory: Path) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert by_key(render(directory)) == by_key([d for d in yaml.safe_load_all(rendered) if d])


def test_production_rules_hold_in_the_overlay() -> None:
    docs = by_key(render(OVERLAY))
    workloads = [d for d in docs.values() if d["kind"] in ("Deployment", "Job")]
    assert {d["metadata"]["name"] for d in workloads} == {
        "clusterflow-api",
        "clusterflow-worker",
        "clusterflow-migrate",
        "clusterflow-bootstrap",
    }
    for doc in workloads:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        # Only the bootstrap Job talks to the Kubernetes API (it writes the owner-key Secret).
        assert spec["automountServiceAccountToken"] is (doc["metadata"]["name"] == "clusterflow-bootstrap")
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert container["image"].startswith("registry.example.com/platform/clusterflow:")
            refs = {k: v["name"] for e in container["envFrom"] for k, v in e.items()}
            assert refs == {"configMapRef": "clusterflow", "secretRef": "clusterflow"}
            assert ("ConfigMap", "clusterflow") in docs
        assert doc["metadata"]["namespace"] == "clusterflow"

    api = docs[("Deployment", "clusterflow-api")]
    container = pod_spec(api)["containers"][0]
    assert container["args"] == ["api"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    selector = api["spec"]["selector"]["matchLabels"]
    assert docs[("PodDisruptionBudget", "clusterflow-api")]["spec"]["selector"]["matchLabels"] == selector
    hpa = docs[("HorizontalPodAutoscaler", "clusterflow-api")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "clusterflow-api" and hpa["minReplicas"] >= 2

    worker = docs[("Deployment", "clusterflow-worker")]
    assert pod_spec(worker)["containers"][0]["args"] == ["worker"]
    assert worker["spec"]["replicas"] == 3
    shutdown = re.search(
        r"graceful_shutdown_timeout=timedelta\(seconds=(\d+)\)", (ROOT / "src/clusterflow/worker/main.py").read_text()
    )
    assert shutdown is not None
    assert pod_spec(worker)["terminationGracePeriodSeconds"] >= int(shutdown.group(1)) + 15
    mounts = {m["mountPath"] for m in pod_spec(worker)["containers"][0]["volumeMounts"]}
    assert mounts == {"/tmp", "/etc/temporal-tls"}
    assert docs[("ConfigMap", "clusterflow")]["data"]["CLUSTERFLOW_TEMPORAL_TLS_CERT"] == "/etc/temporal-tls/tls.crt"

    assert pod_spec(docs[("Job", "clusterflow-migrate")])["containers"][0]["args"] == ["migrate"]
    bootstrap = pod_spec(docs[("Job", "clusterflow-bootstrap")])
    assert bootstrap["serviceAccountName"] == "clusterflow-bootstrap"
    assert bootstrap["containers"][0]["args"][:2] == ["admin", "bootstrap"]
    assert "--key-secret" in bootstrap["containers"][0]["args"]
    rules = docs[("Role", "clusterflow-bootstrap")]["rules"]
    assert all(r["resources"] == ["secrets"] for r in rules)
    assert {v for r in rules for v in r["verbs"]} == {"create", "update"}  # never reads a Secret
    assert all(r.get("resourceNames") == ["clusterflow-owner-key"] for r in rules if r["verbs"] != ["create"])
    binding = docs[("RoleBinding", "clusterflow-bootstrap")]
    account = {"kind": "ServiceAccount", "name": "clusterflow-bootstrap", "namespace": "clusterflow"}
    assert binding["subjects"] == [account]
    config = docs[("ConfigMap", "clusterflow")]["data"]
    assert config["CLUSTERFLOW_BOOTSTRAP_OWNER_EMAIL"] and config["CLUSTERFLOW_BOOTSTRAP_ORGANIZATION"]
    deny = docs[("NetworkPolicy", "clusterflow-default-deny")]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny

    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert 'ENTRYPOINT ["clusterflow"]' in dockerfile


@pytest.mark.skipif(checkov_binary() is None, reason="checkov not installed: run `make deploy-check`")
def test_checkov_finds_nothing_unjustified(tmp_path: Path) -> None:
    for index, doc in enumerate(render(OVERLAY)):
        (tmp_path / f"{index:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml").write_text(yaml.safe_dump(doc))
    shutil.copy(ROOT / "deploy" / "Dockerfile", tmp_path / "Dockerfile")
    shutil.copy(ROOT / "deploy" / "agent.Dockerfile", tmp_path / "agent.Dockerfile")
    reports = run_checkov(tmp_path, "kubernetes", "dockerfile")
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    for report in reports:
        failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
        assert failed == [], failed
        assert report["summary"]["parsing_errors"] == 0
        assert report["summary"]["passed"] > 0
        if report["check_type"] == "dockerfile":  # both images were read
            files = {c["file_path"] for c in report["results"]["passed_checks"]}
            assert files == {"/Dockerfile", "/agent.Dockerfile"}, files
