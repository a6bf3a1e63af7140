"""The K8sCluster document's rules, independent of any route."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from clusterflow.api.schemas.clusters import K8sCluster
from clusterflow.workflows.steps import phase_progress
from tests.helpers import deploy_document


def test_the_api_md_example_is_valid() -> None:
    doc = K8sCluster.model_validate(deploy_document())
    assert doc.spec.provisioner.kubernetes_version() == "1.31"
    assert doc.spec.clusterSpec.dataPlane.nodeGroups[1].instanceType == "spot"


@pytest.mark.parametrize("name", ["a", "demo-1", "a" * 50, "x1-y2"])
def test_dns_names_accepted(name: str) -> None:
    doc = deploy_document(name)
    assert K8sCluster.model_validate(doc).spec.clusterName == name


@pytest.mark.parametrize("name", ["", "1abc", "-abc", "abc-", "ABC", "a_b", "a.b", "a" * 51])
def test_bad_dns_names_refused(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        K8sCluster.model_validate(deploy_document(name))
    assert info.value.errors()[0]["loc"] == ("spec", "clusterName")


def test_max_below_min_names_max_node() -> None:
    doc = deploy_document()
    doc["spec"]["clusterSpec"]["dataPlane"]["nodeGroups"][0].update(minNode=5, maxNode=2)
    with pytest.raises(ValidationError) as info:
        K8sCluster.model_validate(doc)
    error = info.value.errors()[0]
    assert error["loc"][-1] == "maxNode"
    assert "minNode (5)" in error["msg"]


def test_phase_progress_covers_zero_to_hundred_without_gaps() -> None:
    ranges = [phase_progress(i, 6) for i in range(6)]
    assert ranges[0][0] == 0
    assert ranges[-1][1] == 100
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(5))
