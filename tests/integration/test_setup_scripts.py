"""The setup scripts a customer runs (GCP, Azure, the agent install line) run for real, in bash,
against stub `gcloud`, `az`, `kubectl` and `curl` executables on PATH that record every call and
keep what was "created", so a second run sees the first run's resources. The stubs refuse what a
test tells them to (a role assignment the caller may not make): the script must stop there,
non-zero, with a message, and the callback to our API must not run. `shellcheck -o all` reads
every generated script.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterflow.api.agent_manifest import install_script
from clusterflow.api.cloud_scripts import GCP_SETUP_PERMISSIONS, azure_script, gcp_identity, gcp_script

STUB = r"""
import json, os, re, sys
tool = os.environ["STUB_TOOL"]
args = sys.argv[1:]
line = " ".join([tool, *args])
state_path = os.environ["STUB_STATE"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {"created": []}
stdin = sys.stdin.read() if tool == "kubectl" else ""
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps([tool, args, stdin]) + "\n")
refuse = os.environ.get("STUB_REFUSE")
if refuse and re.search(refuse, line):
    sys.stderr.write(f"ERROR: ({tool}) PERMISSION_DENIED: the caller does not have permission\n")
    sys.exit(1)
positional = [a for a in args if not a.startswith("-")]
def key(verb_index):
    name = positional[verb_index + 1 : verb_index + 2]
    return " ".join(positional[:verb_index] + [n.split("@")[0] for n in name])
def save():
    json.dump(state, open(state_path, "w"))
VERBS = ("describe", "create", "create-oidc", "update-oidc", "show", "list")
verbs = [i for i, a in enumerate(positional) if a in VERBS]
if tool == "gcloud":
    if positional[:2] == ["auth", "list"]:
        print(os.environ.get("STUB_ACCOUNT", ""))
    elif positional[:2] == ["auth", "print-access-token"]:
        print("stub-token")
    elif positional[:2] == ["projects", "describe"]:
        print(os.environ["STUB_PROJECT_NUMBER"])
    elif verbs and positional[verbs[0]] == "describe":
        sys.exit(0 if key(verbs[0]) in state["created"] else 1)
    elif verbs and positional[verbs[0]] in ("create", "create-oidc"):
        state["created"].append(key(verbs[0])); save()
elif tool == "curl":
    url = next(a for a in args if a.startswith("http"))
    if "testIamPermissions" in url:
        asked = json.loads(args[args.index("-d") + 1])["permissions"]
        withheld = os.environ.get("STUB_WITHHELD", "")
        print(json.dumps({"permissions": [p for p in asked if p != withheld]}))
elif tool == "az":
    joined = " ".join(positional)
    if joined.startswith("account show") and "tenantId" in args:
        print("00000000-0000-0000-0000-0000000000aa")
    elif joined.startswith("ad app list"):
        print("11111111-1111-1111-1111-111111111111" if "app" in state["created"] else "")
    elif joined.startswith("ad app create"):
        state["created"].append("app"); save(); print("11111111-1111-1111-1111-111111111111")
    elif joined.startswith("ad sp show"):
        if "sp" not in state["created"]:
            sys.exit(1)
        print("22222222-2222-2222-2222-222222222222")
    elif joined.startswith("ad sp create"):
        state["created"].append("sp"); save()
    elif joined.startswith("ad app federated-credential list"):
        print("clusterflow-cred" if "credential" in state["created"] else "")
    elif joined.startswith("ad app federated-credential create"):
        state["created"].append("credential"); save()
    elif joined.startswith("role assignment list"):
        role = args[args.index("--role") + 1]
        print("/assignment/" + role if "role:" + role in state["created"] else "")
    elif joined.startswith("role assignment create"):
        state["created"].append("role:" + args[args.index("--role") + 1]); save()
    elif joined.startswith("rest"):
        print(os.environ.get("STUB_AZ_GRANTS", "*\t"))
elif tool == "kubectl":
    if os.environ.get("STUB_KUBECTL_FAIL"):
        sys.exit(1)
"""


@dataclass
class Run:
    returncode: int
    stderr: str
    calls: list[tuple[str, list[str], str]]

    def called(self, pattern: str) -> list[str]:
        return [" ".join([tool, *args]) for tool, args, _ in self.calls if re.search(pattern, " ".join([tool, *args]))]


@dataclass
class Stubs:
    bin: Path
    log: Path
    state: Path

    def run(self, script: str, *, env: dict[str, str] | None = None, inline: bool = False) -> Run:
        self.log.write_text("")
        environment = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "HOME": str(self.bin.parent),
            "STUB_LOG": str(self.log),
            "STUB_STATE": str(self.state),
            "STUB_ACCOUNT": "owner@acme.example",
            "STUB_PROJECT_NUMBER": "123456789012",
        } | (env or {})
        bash = shutil.which("bash") or "/bin/bash"
        command = [bash, "-c", script] if inline else [bash, "-s"]
        done = subprocess.run(
            command, input=None if inline else script, capture_output=True, text=True, env=environment, timeout=60
        )
        calls = [tuple(json.loads(line)) for line in self.log.read_text().splitlines()]
        return Run(done.returncode, done.stderr, calls)


@pytest.fixture
def stubs(tmp_path: Path) -> Stubs:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = tmp_path / "stub.py"
    program.write_text(STUB)
    for tool in ("gcloud", "az", "kubectl", "curl"):
        wrapper = bin_dir / tool
        wrapper.write_text(
            f'#!/bin/sh\nSTUB_TOOL={tool} exec {shlex.quote(sys.executable)} {shlex.quote(str(program))} "$@"\n'
        )
        wrapper.chmod(0o755)
    return Stubs(bin_dir, tmp_path / "calls.jsonl", tmp_path / "state.json")


SUBJECT = "org:org_1:acct:op_01ABCDEFGHJK"
CALLBACK = "https://cf.example/v1/cloud-accounts/azure/op_01ABCDEFGHJK/callback"


def gcp(level: str) -> str:
    identity = gcp_identity("op_01ABCDEFGHJK", "acme-prod-1", "123456789012")
    return gcp_script(identity, "https://cf.example", SUBJECT, level, "prod")


def azure(level: str) -> str:
    sub = "0c0c0c0c-0000-4000-8000-000000000001"
    return azure_script("op_01ABCDEFGHJK", sub, "rg-prod", "https://cf.example", SUBJECT, level, "prod", CALLBACK)


MANIFEST = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: clusterflow-agent\n"
SCRIPTS = {
    "gcp-read": lambda: gcp("read"),
    "gcp-manage": lambda: gcp("manage"),
    "azure-read": lambda: azure("read"),
    "azure-manage": lambda: azure("manage"),
    "agent-install": lambda: "#!/usr/bin/env bash\n" + install_script(MANIFEST) + "\n",
}


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed: `make test` installs it")
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_shellcheck_finds_nothing_in_generated_scripts(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.sh"
    path.write_text(SCRIPTS[name]())
    checked = subprocess.run(["shellcheck", "-o", "all", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout
    if name == "agent-install":  # the line hands bash a script of its own: check that one too
        inner = shlex.split(install_script(MANIFEST))[-1]
        path.write_text(f"#!/usr/bin/env bash\nset -euo pipefail\n{inner}\n")
        checked = subprocess.run(["shellcheck", "-o", "all", str(path)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout


@pytest.mark.parametrize("name", [n for n in sorted(SCRIPTS) if n != "agent-install"])
def test_every_setup_script_starts_strict(name: str) -> None:
    lines = SCRIPTS[name]().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert next(line for line in lines if not line.startswith("#")) == "set -euo pipefail"
    assert "|| true" not in SCRIPTS[name]()


def test_gcp_script_grants_the_level_on_the_project_and_acts_as_one_service_account(stubs: Stubs) -> None:
    first = stubs.run(gcp("manage"))
    assert first.returncode == 0, first.stderr
    bindings = first.called(r"add-iam-policy-binding")
    project = [c for c in bindings if c.startswith("gcloud projects")]
    assert sorted(re.search(r"--role=(\S+)", c).group(1) for c in project) == [  # type: ignore[union-attr]
        "roles/compute.viewer",
        "roles/container.admin",
    ]
    assert not any("projectIamAdmin" in c or "serviceAccountUser" in c for c in project)
    acting = [c for c in bindings if "serviceAccountUser" in c]
    assert acting == [
        "gcloud iam service-accounts add-iam-policy-binding 123456789012-compute@developer.gserviceaccount.com "
        "--member=serviceAccount:clusterflow-abcdefghjk@acme-prod-1.iam.gserviceaccount.com "
        "--role=roles/iam.serviceAccountUser"
    ]
    assert len(first.called(r" create")) == 3  # pool, provider, service account

    again = stubs.run(gcp("manage"))  # idempotent: found, not created again
    assert again.returncode == 0, again.stderr
    assert again.called(r" create") == []
    assert len(again.called(r"providers update-oidc")) == 1  # the provider is brought up to date


def test_gcp_read_grants_viewers_only(stubs: Stubs) -> None:
    run = stubs.run(gcp("read"))
    assert run.returncode == 0, run.stderr
    roles = sorted(re.search(r"--role=(\S+)", c).group(1) for c in run.called(r"projects add-iam-policy-binding"))  # type: ignore[union-attr]
    assert roles == ["roles/compute.viewer", "roles/container.viewer"]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"STUB_ACCOUNT": ""}, "gcloud is not logged in"),
        ({"STUB_PROJECT_NUMBER": "999999999999"}, "has number 999999999999, not 123456789012"),
        ({"STUB_WITHHELD": "resourcemanager.projects.setIamPolicy"}, "lacks resourcemanager.projects.setIamPolicy"),
    ],
)
def test_gcp_prerequisites_fail_before_any_change(stubs: Stubs, env: dict[str, str], says: str) -> None:
    run = stubs.run(gcp("manage"), env=env)
    assert run.returncode != 0
    assert says in run.stderr
    assert run.called(r"services enable| create|add-iam-policy-binding") == []


def test_gcp_a_refused_binding_stops_the_script(stubs: Stubs) -> None:
    run = stubs.run(gcp("manage"), env={"STUB_REFUSE": r"projects add-iam-policy-binding .*container\.admin"})
    assert run.returncode != 0
    assert "PERMISSION_DENIED" in run.stderr
    assert "clusterflow setup: stopped at line" in run.stderr
    assert run.called(r"roles/iam.workloadIdentityUser") == [], "nothing after the refused binding ran"
    assert "is set up" not in run.stderr


def test_gcp_without_gcloud_says_so(stubs: Stubs) -> None:
    (stubs.bin / "gcloud").unlink()
    run = stubs.run(gcp("manage"), env={"PATH": str(stubs.bin)})  # this machine may have a real gcloud
    assert run.returncode != 0
    assert "gcloud is not installed" in run.stderr


def test_azure_script_assigns_roles_on_the_resource_group_then_calls_back(stubs: Stubs) -> None:
    first = stubs.run(azure("manage"))
    assert first.returncode == 0, first.stderr
    assignments = first.called(r"role assignment create")
    assert len(assignments) == 3
    scope = "/subscriptions/0c0c0c0c-0000-4000-8000-000000000001/resourceGroups/rg-prod"
    assert all(c.endswith(f"--scope {scope}") for c in assignments), assignments
    assert {re.search(r"--role (.+) --scope", c).group(1) for c in assignments} == {  # type: ignore[union-attr]
        "Reader",
        "Azure Kubernetes Service Contributor Role",
        "Network Contributor",
    }
    callbacks = first.called(re.escape(CALLBACK))
    assert len(callbacks) == 1
    assert first.calls[-1][0] == "curl", "the callback is the last call, after every assignment"

    again = stubs.run(azure("manage"))
    assert again.returncode == 0, again.stderr
    assert again.called(r" create") == []
    assert len(again.called(re.escape(CALLBACK))) == 1


@pytest.mark.parametrize(
    "grants",
    [
        "*\t",  # Owner
        "Microsoft.Authorization/roleAssignments/*\t",  # User Access Administrator
        "*\tMicrosoft.Authorization/*/Write\nMicrosoft.Authorization/*\t",  # Contributor and User Access Admin
    ],
)
def test_azure_callers_who_may_assign_roles_pass_the_check(stubs: Stubs, grants: str) -> None:
    run = stubs.run(azure("read"), env={"STUB_AZ_GRANTS": grants})
    assert run.returncode == 0, run.stderr


def test_azure_a_refused_role_assignment_stops_the_script_before_the_callback(stubs: Stubs) -> None:
    run = stubs.run(azure("manage"), env={"STUB_REFUSE": r"role assignment create .*Contributor"})
    assert run.returncode != 0
    assert "PERMISSION_DENIED" in run.stderr
    assert "clusterflow setup: stopped at line" in run.stderr
    assert run.called(r"^curl") == [], "the callback must not run"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"STUB_REFUSE": r"^az account show$"}, "not logged in"),
        ({"STUB_REFUSE": r"^az group show"}, "resource group rg-prod does not exist"),
        ({"STUB_AZ_GRANTS": "Microsoft.ContainerService/*\t"}, "may not assign roles"),
        # Contributor: every action but Microsoft.Authorization writes
        ({"STUB_AZ_GRANTS": "*\tMicrosoft.Authorization/*/Delete,Microsoft.Authorization/*/Write"}, "may not assign"),
    ],
)
def test_azure_prerequisites_fail_before_any_change(stubs: Stubs, env: dict[str, str], says: str) -> None:
    run = stubs.run(azure("manage"), env=env)
    assert run.returncode != 0
    assert says in run.stderr
    assert run.called(r" create|^curl") == []


def test_the_gcp_permission_check_asks_for_what_setup_needs(stubs: Stubs) -> None:
    run = stubs.run(gcp("manage"))
    asked = next(args for tool, args, _ in run.calls if tool == "curl")
    assert sorted(json.loads(asked[asked.index("-d") + 1])["permissions"]) == sorted(GCP_SETUP_PERMISSIONS)


def test_agent_install_line_applies_exactly_the_manifest(stubs: Stubs) -> None:
    run = stubs.run(install_script(MANIFEST), inline=True)
    assert run.returncode == 0, run.stderr
    applied = [(args, stdin) for tool, args, stdin in run.calls if tool == "kubectl"]
    assert applied == [(["apply", "-f", "-"], MANIFEST)]


def test_agent_install_line_fails_when_the_decode_fails(stubs: Stubs) -> None:
    encoded = base64.b64encode(MANIFEST.encode()).decode()
    mangled = install_script(MANIFEST).replace(encoded, encoded[:-3] + "!!!")
    run = stubs.run(mangled, inline=True)
    assert run.returncode != 0
    assert "did not decode" in run.stderr
    assert [c for c in run.calls if c[0] == "kubectl"] == [], "nothing half-decoded reaches kubectl"


def test_agent_install_line_fails_when_kubectl_fails(stubs: Stubs) -> None:
    run = stubs.run(install_script(MANIFEST), inline=True, env={"STUB_KUBECTL_FAIL": "1"})
    assert run.returncode != 0
