"""The README and examples stay true to the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clusterflow.api.schemas.clusters import K8sCluster
from clusterflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_readme_documents_every_setting(name: str) -> None:
    field = Settings.model_fields[name]
    variable = field.validation_alias.choices[0] if field.validation_alias else f"CLUSTERFLOW_{name.upper()}"
    assert f"`{variable}`" in (ROOT / "README.md").read_text()
    assert field.description, f"setting {name} has no description"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.name)
def test_examples_are_valid_documents(path: Path) -> None:
    K8sCluster.model_validate(json.loads(path.read_text()))


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("local-cluster*.yaml")), ids=lambda p: p.name)
def test_yaml_examples_are_valid_documents(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    if document["kind"] == "K8sCluster":
        K8sCluster.model_validate(document)
    else:
        assert document["kind"] == "K8sClusterUpdate"  # validated by the update route (issue 3)


def test_the_yaml_example_is_the_json_example() -> None:
    as_yaml = yaml.safe_load((ROOT / "examples" / "local-cluster.yaml").read_text())
    assert as_yaml == json.loads((ROOT / "examples" / "local-cluster.json").read_text())


def test_every_file_the_readme_names_exists() -> None:
    """Paths in backticks (`providers/aws/network.py`, `tests/fakes/gke.py`) name real files,
    from the project root, `src/`, `src/clusterflow/` or `src/clusterflow/activities/`."""
    import re

    bases = [
        ROOT,
        ROOT / "src",
        ROOT / "src" / "clusterflow",
        ROOT / "src" / "clusterflow" / "activities",
        ROOT / "tests",
    ]
    named = set(re.findall(r"`([\w.-]+(?:/[\w.-]+)+\.(?:py|sql|yaml|json))`", (ROOT / "README.md").read_text()))
    missing = sorted(p for p in named if not any((base / p).exists() for base in bases))
    assert missing == []
