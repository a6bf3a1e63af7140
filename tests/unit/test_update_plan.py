"""The planner's typed output, and that it survives Temporal's data converter as the same types.

The journeys through the API (tests/integration/test_*_journey.py) prove the providers apply
what the planner writes; these pin the contract itself: each change carries what its kind needs,
the inverse restores groups and tags but never a version, and what cannot be applied is refused.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
from temporalio.converter import DataConverter

from clusterflow.contracts.changes import ChangeKind, ClusterShape, NodeGroupChange, UpdateRequest
from clusterflow.contracts.cluster import NodeGroupSize, NodeGroupSpec
from clusterflow.contracts.operations import UpdateInput
from clusterflow.contracts.phases import Phase
from clusterflow.planning import PlannedUpdate, plan_update

WORKERS = NodeGroupSpec("workers", ("m5.large",), 1, 3, labels={"role": "app"})
BATCH = NodeGroupSpec("batch", ("m5.xlarge",), 0, 5, spot=True)
GPU = NodeGroupSpec("gpu", ("m5.2xlarge",), 1, 2)
BEFORE = ClusterShape("1.31", (WORKERS, BATCH), {"team": "platform"})


def plan(provider: str = "aws", before: ClusterShape = BEFORE, **request: object) -> PlannedUpdate:
    return plan_update(
        cluster_id="cl_1",
        provider=provider,
        before=before,
        request=UpdateRequest(**request),  # type: ignore[arg-type]
        supported_versions=["1.30", "1.31", "1.32", "1.33"],
    )


def test_an_update_plans_each_change_with_what_its_kind_needs_and_an_inverse_without_versions() -> None:
    planned = plan(
        kubernetes_version="1.32",
        node_groups=(WORKERS.resized(NodeGroupSize(2, 6)), GPU),
        tags={"team": "core"},
    )
    assert planned.passed, planned.errors
    change, inverse = planned.plan.change, planned.plan.inverse
    assert [(c.kind, c.name) for c in change.node_groups] == [
        (ChangeKind.RESIZE, "workers"),
        (ChangeKind.UPGRADE, "workers"),
        (ChangeKind.ADD, "gpu"),
        (ChangeKind.REMOVE, "batch"),
    ]
    assert change.node_groups[0].new_size == NodeGroupSize(2, 6)
    assert change.node_groups[2].new_group == GPU  # the whole group: machine types, sizes, labels
    assert change.version is not None and (change.version.current, change.version.target) == ("1.31", "1.32")
    assert change.tags == {"team": "core"}
    assert planned.plan.phases == (Phase.VALIDATE, Phase.CONTROL_PLANE, Phase.NODE_GROUPS, Phase.ADDONS, Phase.VERIFY)
    # The inverse undoes in reverse order: recreate batch as it was, remove gpu, shrink workers back.
    assert [(c.kind, c.name) for c in inverse.node_groups] == [
        (ChangeKind.ADD, "batch"),
        (ChangeKind.REMOVE, "gpu"),
        (ChangeKind.RESIZE, "workers"),
    ]
    assert inverse.node_groups[0].new_group == BATCH
    assert inverse.node_groups[2].new_size == NodeGroupSize(1, 3)
    assert inverse.version is None, "clouds cannot downgrade: a rollback never moves the control plane"
    assert inverse.tags == {"team": "platform"}
    assert planned.plan.after == ClusterShape("1.32", (WORKERS.resized(NodeGroupSize(2, 6)), GPU), {"team": "core"})


def test_the_plan_crosses_temporals_data_converter_as_the_same_types() -> None:
    planned = plan(kubernetes_version="1.32", node_groups=(WORKERS.resized(NodeGroupSize(2, 6)), GPU))
    original = UpdateInput("op_1", "org_1", "cl_1", "demo", "aws", "us-east-1", {}, plan=planned.plan)
    converter = DataConverter.default.payload_converter
    # As the API hands it over (a JSON dict), and back as the workflow receives it.
    payloads = converter.to_payloads([asdict(original)])
    (decoded,) = converter.from_payloads(payloads, [UpdateInput])
    assert decoded.plan == planned.plan
    assert isinstance(decoded.plan.change.node_groups[0], NodeGroupChange)
    assert decoded.plan.change.node_groups[0].kind is ChangeKind.RESIZE


def test_a_change_missing_what_its_kind_needs_is_refused_even_when_decoded() -> None:
    with pytest.raises(ValueError, match="missing"):
        NodeGroupChange(ChangeKind.RESIZE, "workers")
    converter = DataConverter.default.payload_converter
    payloads = converter.to_payloads([{"kind": "ADD", "name": "gpu"}])
    with pytest.raises(Exception, match="missing"):
        converter.from_payloads(payloads, [NodeGroupChange])
    with pytest.raises(ValueError, match="not a valid range"):
        NodeGroupSpec("bad", ("m5.large",), 5, 2)


def test_changes_no_cloud_makes_in_place_are_refused_by_field() -> None:
    relabelled = NodeGroupSpec("workers", ("m5.4xlarge",), 1, 3, labels={"role": "db"})
    planned = plan(node_groups=(relabelled, BATCH))
    assert not planned.passed
    assert any(e.startswith("spec.nodeGroups[0].machineTypes:") for e in planned.errors)
    assert any(e.startswith("spec.nodeGroups[0].labels:") for e in planned.errors)


def test_a_cloud_cluster_cannot_be_downgraded_even_when_asked_and_the_simulator_can() -> None:
    cloud = plan(kubernetes_version="1.30", allow_downgrade=True)
    assert not cloud.passed and any("cannot downgrade" in e for e in cloud.errors)
    local = plan("local", kubernetes_version="1.30", allow_downgrade=True)
    assert local.passed, local.errors


def test_provider_settings_apply_only_to_their_provider_and_unsupported_fields_are_named() -> None:
    from clusterflow.contracts.changes import GkeChange

    wrong = plan("azure", gke=GkeChange(release_channel="RAPID"))
    assert any(e.startswith("spec.gke: applies to gcp clusters") for e in wrong.errors)
    named = plan(unsupported=("spec.gke.imageType",), tags={"a": "b"})
    assert any(e.startswith("spec.gke.imageType: not supported yet") for e in named.errors)


def test_a_tags_only_change_reaches_the_cloud_through_the_control_plane_phase() -> None:
    planned = plan(tags={"team": "core"})
    assert planned.passed, planned.errors
    assert planned.plan.phases == (Phase.VALIDATE, Phase.CONTROL_PLANE, Phase.VERIFY)
    assert planned.plan.inverse.tags == {"team": "platform"}
