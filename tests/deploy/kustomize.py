"""A small kustomize for the tests: renders deploy/kubernetes without the kustomize binary.

It implements what our kustomizations use and nothing else: `resources` (files and
directories), `namespace` (also of role bindings' service-account subjects), `labels` (metadata
only), `images`, `replicas` and `patches` as
strategic merge patches (lists of named items merge by `name`, new items first, other lists
are replaced). When
`kubectl` is installed the tests check this renderer against `kubectl kustomize`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        out_list = [copy.deepcopy(i) for i in base]
        added = []
        for item in patch:
            match = next((i for i, b in enumerate(out_list) if b["name"] == item["name"]), None)
            if match is None:
                added.append(copy.deepcopy(item))
            else:
                out_list[match] = _merge(out_list[match], item)
        return added + out_list  # as kustomize does: new items first
    return copy.deepcopy(patch)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) or spec.get("jobTemplate", {}).get("spec", {}).get(
        "template", {}
    ).get("spec", {})
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs += render(path) if path.is_dir() else _load_all(path)
    for patch_entry in kustomization.get("patches", []):
        for patch in _load_all(directory / patch_entry["path"]):
            key = (patch["kind"], patch["metadata"]["name"])
            index = next(i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == key)
            docs[index] = _merge(docs[index], patch)
    for label in kustomization.get("labels", []):
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    new = image.get("newName", name)
                    container["image"] = f"{new}@{image['digest']}" if "digest" in image else f"{new}:{image['newTag']}"
    for replicas in kustomization.get("replicas", []):
        for doc in docs:
            if doc["metadata"]["name"] == replicas["name"] and "replicas" in doc.get("spec", {}):
                doc["spec"]["replicas"] = replicas["count"]
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
            for subject in doc.get("subjects", []):  # as kustomize: a binding's service accounts move too
                if subject.get("kind") == "ServiceAccount" and "namespace" in subject:
                    subject["namespace"] = kustomization["namespace"]
    return docs
