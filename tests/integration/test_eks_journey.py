"""An EKS cluster's whole life through the public API, checked against EKS itself.

Only HTTP against the running API (the real app in-process, a real worker, real Temporal and
PostgreSQL) drives the cluster; boto3 against moto reads the customer's account the way an
auditor would (`EksAuditor`), and what EKS holds is the proof, never our records. The records
are then checked to say the same thing.

One cluster lives through: connect, deploy (two node groups), two refused updates (a downgrade
and a skipped minor: 422, nothing enqueued), an update that succeeds (one minor up, a group
resized, one added, one removed, tags changed), an update cancelled while NODE_GROUPS runs and
one that fails there (node groups come back, the control plane stays on the version it
reached, and `rollbackStatus` / `cleanedUp` / `leftBehind` say so), then delete (nothing of
the cluster left in EKS, EC2 or IAM; the history stays readable). `EksGaps` fills moto's gaps
and injects the faults (`hold`, `fail_creates`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from clusterflow.catalog.aws import MACHINE_TYPES
from tests.aws_support import REGION, EksAuditor, aws_worker, connect, gaps, settings
from tests.conftest import Org
from tests.fakes.aws import EksGaps, MotoAws, new_account_id
from tests.helpers import all_events, wait_for_operation

__all__ = ["aws_worker", "gaps", "settings"]  # fixtures, used by name

NAME = "journey-eks"
TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}

WORKERS = {
    "name": "workers",
    "machineTypes": ["m5.large"],
    "minNode": 1,
    "maxNode": 3,
    "labels": {"role": "general"},
    "taints": [{"key": "dedicated", "value": "general", "effect": "NoSchedule"}],
}
BATCH = {
    "name": "batch",
    "machineTypes": ["medium"],
    "minNode": 0,
    "maxNode": 5,
    "instanceType": "spot",
    "labels": {"role": "batch"},
    "taints": [{"key": "batch", "effect": "NoExecute"}],
}
GPU = {
    "name": "gpu",
    "machineTypes": ["c6i.xlarge"],
    "minNode": 1,
    "maxNode": 2,
    "labels": {"role": "compute"},
    "taints": [{"key": "compute", "value": "true", "effect": "PreferNoSchedule"}],
}
EXTRA = {"name": "extra", "machineTypes": ["t3.large"], "minNode": 1, "maxNode": 2}


def resized(group: dict[str, Any], low: int, high: int) -> dict[str, Any]:
    return {**group, "minNode": low, "maxNode": high}


def update_document(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "clusterflow.dev/v1", "kind": "K8sClusterUpdate", "spec": spec}


# --- reading EKS and the record the same way ----------------------------------------------------


def wanted(group: dict[str, Any]) -> dict[str, Any]:
    """A requested node group as EKS should hold it."""
    return {
        "minSize": group["minNode"],
        "maxSize": group["maxNode"],
        "instanceTypes": [MACHINE_TYPES.get(m, m) for m in group["machineTypes"]],
        "labels": group.get("labels") or {},
        "taints": sorted(
            (t["key"], t.get("value") or "", TAINT_EFFECTS[t["effect"]]) for t in group.get("taints") or []
        ),
        "capacityType": "SPOT" if group.get("instanceType") == "spot" else "ON_DEMAND",
    }


def held(group: dict[str, Any]) -> dict[str, Any]:
    """A node group as EKS describes it, in `wanted`'s terms."""
    return {
        "minSize": group["scalingConfig"]["minSize"],
        "maxSize": group["scalingConfig"]["maxSize"],
        "instanceTypes": group["instanceTypes"],
        "labels": group.get("labels") or {},
        "taints": sorted((t["key"], t.get("value") or "", t["effect"]) for t in group.get("taints") or []),
        "capacityType": group["capacityType"],
    }


def recorded(group: dict[str, Any]) -> dict[str, Any]:
    """A node group of the record's `workerNodes`, in the request's terms."""
    return {
        "name": group["name"],
        "machineTypes": group["machineTypes"],
        "minNode": group["minNode"],
        "maxNode": group["maxNode"],
        "labels": group.get("labels") or {},
        # The document's `operator` (Kubernetes') has no EKS counterpart: compared without it.
        "taints": [{k: v for k, v in t.items() if v != "" and k != "operator"} for t in group.get("taints") or []],
        "instanceType": group.get("instanceType") or "ondemand",
    }


def as_requested(group: dict[str, Any]) -> dict[str, Any]:
    return {"labels": {}, "taints": [], "instanceType": "ondemand", **group}


def assert_eks_holds(audit: EksAuditor, groups: list[dict[str, Any]], **versions: str) -> dict[str, Any]:
    """EKS holds exactly `groups` (field by field), each at its version in `versions` if named."""
    held_groups = audit.node_groups(NAME)
    assert set(held_groups) == {g["name"] for g in groups}
    for group in groups:
        name = group["name"]
        assert held(held_groups[name]) == wanted(group), name
        assert held_groups[name]["status"] == "ACTIVE", name
        assert held_groups[name]["amiType"] == "BOTTLEROCKET_x86_64", name
        if name in versions:
            assert held_groups[name]["version"] == versions[name], name
    return held_groups


async def view(api: httpx.AsyncClient, org: Org, cluster_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/clusters/{cluster_id}", headers=org.headers())
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def assert_record_says(
    api: httpx.AsyncClient, org: Org, cluster_id: str, version: str, groups: list[dict[str, Any]], tags: dict[str, str]
) -> dict[str, Any]:
    """The cluster's record (GET /v1/clusters/{id}) states `version`, `groups` and `tags`."""
    record = await view(api, org, cluster_id)
    assert record["state"] == "ACTIVE"
    assert record["kubernetesVersion"] == version
    assert [recorded(g) for g in record["workerNodes"]] == [as_requested(g) for g in groups]
    # The cluster view does not show tags; the planner plans from the recorded ones, so a dry
    # run asking for exactly `tags` finds nothing to change, and one asking for other tags does.
    same = await api.patch(
        f"/v1/clusters/{cluster_id}",
        json=update_document(tags=tags, updateConfig={"dryRun": True}),
        headers=org.headers(),
    )
    assert same.status_code == 200, same.text
    assert any("nothing to change" in e for e in same.json()["data"]["errors"]), same.json()["data"]
    other = await api.patch(
        f"/v1/clusters/{cluster_id}",
        json=update_document(tags={**tags, "probe": "x"}, updateConfig={"dryRun": True}),
        headers=org.headers(),
    )
    assert other.json()["data"]["validationPassed"] is True, other.json()["data"]
    return record


# --- driving the API ------------------------------------------------------------------------


async def approve_if_asked(api: httpx.AsyncClient, org: Org, accepted: dict[str, Any]) -> None:
    """Decide as the owner does when the organization's policy asks for approval."""
    if not accepted.get("approvalRequired"):
        return
    await wait_for_operation(api, org.headers(), accepted["operationId"], until={"AWAITING_APPROVAL"})
    decision = await api.post(
        f"/v1/operations/{accepted['operationId']}/approval",
        json={"action": "APPROVE", "token": accepted["approvalToken"]},
        headers=org.headers(),
    )
    assert decision.status_code == 200, decision.text


async def start_update(api: httpx.AsyncClient, org: Org, cluster_id: str, **spec: Any) -> str:
    response = await api.patch(f"/v1/clusters/{cluster_id}", json=update_document(**spec), headers=org.headers())
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()["data"]
    await approve_if_asked(api, org, accepted)
    return str(accepted["operationId"])


async def operation_count(api: httpx.AsyncClient, org: Org, cluster_id: str) -> int:
    ops = (await api.get(f"/v1/clusters/{cluster_id}/operations", headers=org.headers())).json()["data"]
    return int(ops["totalCount"])


async def wait_for_event(api: httpx.AsyncClient, org: Org, operation_id: str, message: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(e["message"] == message for e in await all_events(api, org.headers(), operation_id)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no event {message!r} in {operation_id}")


def assert_rollback_said(record: dict[str, Any], operation: dict[str, Any], version: str, restored: list[str]) -> None:
    rollback = record["rollbackStatus"]
    assert rollback["status"] == "COMPLETED", rollback
    assert rollback["controlPlaneVersion"] == version
    assert rollback["restored"] == restored
    # What stays as the update left it: the control plane, and the nodes of workers it upgraded.
    control_plane, nodes = rollback["notRestored"]
    assert f"control plane stays on {version}" in control_plane and _previous(version) in control_plane
    assert "workers" in nodes and f"upgraded to {version}" in nodes
    assert operation["metadata"]["cleanedUp"] == rollback["restored"]
    assert operation["metadata"]["leftBehind"] == rollback["notRestored"]


def _previous(version: str) -> str:
    major, minor = version.split(".")
    return f"{major}.{int(minor) - 1}"


# --- the journey ------------------------------------------------------------------------------


async def test_an_eks_cluster_from_connect_to_delete_through_the_api(
    api: httpx.AsyncClient, aws_worker: None, org: Org, moto_aws: MotoAws, gaps: EksGaps
) -> None:
    account_id = new_account_id()
    await connect(api, org, moto_aws, account_id)
    audit = EksAuditor(moto_aws, account_id)

    # -- 1. deploy with two node groups --
    tags = {"team": "platform", "cost-center": "42"}
    document = {
        "apiVersion": "clusterflow.dev/v1",
        "kind": "K8sCluster",
        "spec": {
            "clusterName": NAME,
            "provider": "aws",
            "region": REGION,
            "provisioner": {
                "type": "eks",
                "eks": {
                    "accountId": account_id,
                    "kubernetesVersion": "1.30",
                    "amiFamily": "Bottlerocket",
                    "tags": tags,
                },
            },
            "clusterSpec": {"dataPlane": {"nodeGroups": [WORKERS, BATCH]}},
        },
    }
    response = await api.post("/v1/clusters", json=document, headers=org.headers())
    assert response.status_code == 202, response.text
    deployed = response.json()["data"]
    cluster_id = deployed["clusterId"]
    operation = await wait_for_operation(api, org.headers(), deployed["operationId"], timeout=90)
    assert operation["status"] == "SUCCEEDED", operation

    cluster = audit.cluster(NAME)
    assert cluster is not None and cluster["status"] == "ACTIVE"
    assert cluster["version"] == "1.30"
    assert cluster["resourcesVpcConfig"]["endpointPublicAccess"] is True
    assert cluster["resourcesVpcConfig"]["endpointPrivateAccess"] is False
    assert audit.user_tags(NAME) == tags
    assert audit.tags(NAME)["clusterflow:cluster-id"] == cluster_id
    groups = assert_eks_holds(audit, [WORKERS, BATCH], workers="1.30", batch="1.30")
    assert groups["workers"]["scalingConfig"]["desiredSize"] == 1
    await assert_record_says(api, org, cluster_id, "1.30", [WORKERS, BATCH], tags)
    # The operation's result is what EKS reported, not what was asked for.
    facts = operation["result"]["cluster"]
    assert (facts["kubernetesVersion"], facts["endpoint"]) == (cluster["version"], cluster["endpoint"])
    assert facts["cloudResourceId"] == cluster["arn"]

    # -- refused before anything is enqueued: a downgrade and a skipped minor --
    for version, check in (("1.29", "no-downgrade"), ("1.32", "version-skew")):
        dry = await api.patch(
            f"/v1/clusters/{cluster_id}",
            json=update_document(kubernetesVersion=version, updateConfig={"dryRun": True}),
            headers=org.headers(),
        )
        assert dry.status_code == 200, dry.text
        preview = dry.json()["data"]
        assert preview["validationPassed"] is False
        assert check in {c["name"] for c in preview["preflightChecks"] if c["status"] == "FAIL"}
        real = await api.patch(
            f"/v1/clusters/{cluster_id}", json=update_document(kubernetesVersion=version), headers=org.headers()
        )
        assert real.status_code == 422, real.text
        assert real.json()["error"]["code"] == "UPDATE_REFUSED"
        assert check in real.json()["message"]
    assert await operation_count(api, org, cluster_id) == 1
    assert audit.cluster(NAME)["version"] == "1.30"  # type: ignore[index]
    assert gaps.calls["UpdateClusterVersion"] == 0

    # -- 2. update: one minor up, workers resized, gpu added, batch removed, tags changed --
    workers = resized(WORKERS, 2, 6)
    tags = {"team": "platform", "env": "prod"}
    operation_id = await start_update(
        api, org, cluster_id, kubernetesVersion="1.31", nodeGroups=[workers, GPU], tags=tags
    )
    operation = await wait_for_operation(api, org.headers(), operation_id, timeout=90)
    assert operation["status"] == "SUCCEEDED", operation
    assert audit.cluster(NAME)["version"] == "1.31"  # type: ignore[index]
    groups = assert_eks_holds(audit, [workers, GPU], workers="1.31", gpu="1.31")
    assert groups["workers"]["scalingConfig"]["desiredSize"] == 2  # clamped into the new range
    assert audit.user_tags(NAME) == tags
    await assert_record_says(api, org, cluster_id, "1.31", [workers, GPU], tags)

    # -- 3a. an update cancelled while NODE_GROUPS runs --
    gaps.hold = True  # node-group changes stay in progress until released
    operation_id = await start_update(
        api,
        org,
        cluster_id,
        kubernetesVersion="1.32",
        nodeGroups=[resized(workers, 3, 7), EXTRA],
        tags={"team": "platform", "env": "staging"},
    )
    await wait_for_event(api, org, operation_id, "NODE_GROUPS started")
    for _ in range(600):
        if any(u["status"] == "InProgress" and u["subject"] == (NAME, "workers") for u in gaps.updates.values()):
            break
        await asyncio.sleep(0.05)
    cancel = await api.post(f"/v1/operations/{operation_id}/cancel", headers=org.headers())
    assert cancel.status_code == 200, cancel.text
    await wait_for_event(api, org, operation_id, "NODE_GROUPS rollback started")
    gaps.hold = False  # EKS finishes the resize it started; the rollback then undoes it
    operation = await wait_for_operation(api, org.headers(), operation_id, timeout=90)
    assert operation["status"] == "CANCELLED", operation

    assert audit.cluster(NAME)["version"] == "1.32"  # type: ignore[index]  # reached; cannot go back
    groups = assert_eks_holds(audit, [workers, GPU], workers="1.31", gpu="1.31")
    # Bounds come back; the desired count stays where the cancelled resize put it (3, inside the
    # restored 2..6): an update sets bounds, and the autoscaler owns the count within them.
    assert groups["workers"]["scalingConfig"]["desiredSize"] == 3
    assert audit.user_tags(NAME) == tags
    record = await assert_record_says(api, org, cluster_id, "1.32", [workers, GPU], tags)
    assert record["upgradeStatus"]["status"] == "CANCELLED"
    restored = ["add gpu", "remove extra", "resize workers to 2..6", "tags restored"]
    assert_rollback_said(record, operation, "1.32", restored)

    # -- 3b. an update that fails in NODE_GROUPS (the new group ends CREATE_FAILED) --
    gaps.fail_creates.add("extra")
    operation_id = await start_update(
        api,
        org,
        cluster_id,
        kubernetesVersion="1.33",
        nodeGroups=[resized(workers, 3, 7), EXTRA],
        tags={"team": "data"},
    )
    operation = await wait_for_operation(api, org.headers(), operation_id, timeout=90)
    assert operation["status"] == "FAILED", operation
    assert operation["error"]["code"] == "CLOUD_RESOURCE_FAILED"
    assert "node group extra ended CREATE_FAILED" in operation["error"]["message"]

    assert audit.cluster(NAME)["version"] == "1.33"  # type: ignore[index]
    # workers' sizes are back; its nodes stay on 1.33 (upgraded before the failure, no way back).
    assert_eks_holds(audit, [workers, GPU], workers="1.33", gpu="1.31")
    assert audit.user_tags(NAME) == tags
    record = await assert_record_says(api, org, cluster_id, "1.33", [workers, GPU], tags)
    assert record["upgradeStatus"]["status"] == "FAILED"
    assert_rollback_said(record, operation, "1.33", restored)

    # -- 4. delete: nothing of the cluster is left; the history stays readable --
    response = await api.delete(f"/v1/clusters/{cluster_id}", headers=org.headers())
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    await approve_if_asked(api, org, accepted)
    operation = await wait_for_operation(api, org.headers(), accepted["operationId"], timeout=90)
    assert operation["status"] == "SUCCEEDED", operation
    assert NAME not in audit.cluster_names()
    assert audit.network_of(cluster_id) == {"vpcs": [], "subnets": [], "gateways": [], "route_tables": []}
    assert audit.roles_of(NAME) == set()
    history = (await api.get(f"/v1/clusters/{cluster_id}/operations", headers=org.headers())).json()["data"]
    statuses = sorted((o["operationType"], o["status"]) for o in history["operations"])
    assert statuses == [
        ("CLUSTER_DELETE", "SUCCEEDED"),
        ("CLUSTER_DEPLOY", "SUCCEEDED"),
        ("CLUSTER_UPDATE", "CANCELLED"),
        ("CLUSTER_UPDATE", "FAILED"),
        ("CLUSTER_UPDATE", "SUCCEEDED"),
    ]


# --- the fake refuses what EKS refuses ------------------------------------------------------------


def test_the_fake_refuses_what_eks_refuses(moto_aws: MotoAws) -> None:
    """The refusals the journey relies on EKS making, asked of the fake directly."""
    gaps = EksGaps(creating_polls=0, update_polls=0)
    session = moto_aws.customer_session(new_account_id(), REGION)
    gaps.install(session)
    eks = moto_aws.client("eks", session)
    role = "arn:aws:iam::123456789012:role/eks"
    eks.create_cluster(name="strict", version="1.31", roleArn=role, resourcesVpcConfig={"subnetIds": ["s-1"]})
    group = {"clusterName": "strict", "nodeRole": role, "subnets": ["s-1"]}
    eks.create_nodegroup(nodegroupName="ng", scalingConfig={"minSize": 1, "maxSize": 3, "desiredSize": 1}, **group)
    assert eks.describe_nodegroup(clusterName="strict", nodegroupName="ng")["nodegroup"]["version"] == "1.31"

    def refused(code: str, call: Any, **kwargs: Any) -> None:
        with pytest.raises(ClientError) as caught:
            call(**kwargs)
        assert caught.value.response["Error"]["Code"] == code, caught.value.response

    refused("InvalidParameterException", eks.update_cluster_version, name="strict", version="1.30")  # downgrade
    refused("InvalidParameterException", eks.update_cluster_version, name="strict", version="1.33")  # skips 1.32
    refused("InvalidParameterException", eks.update_cluster_version, name="strict", version="1.31")  # no change
    refused(
        "InvalidParameterException",
        eks.update_nodegroup_version,
        clusterName="strict",
        nodegroupName="ng",
        version="1.32",
    )
    refused(
        "InvalidParameterException",
        eks.create_nodegroup,
        nodegroupName="newer",
        version="1.32",
        scalingConfig={"minSize": 1, "maxSize": 1, "desiredSize": 1},
        **group,
    )
    for scaling in ({"minSize": 4, "maxSize": 2, "desiredSize": 2}, {"minSize": 1, "maxSize": 2, "desiredSize": 3}):
        refused("InvalidParameterException", eks.create_nodegroup, nodegroupName="bad", scalingConfig=scaling, **group)
        refused(
            "InvalidParameterException",
            eks.update_nodegroup_config,
            clusterName="strict",
            nodegroupName="ng",
            scalingConfig=scaling,
        )
    refused(
        "ResourceInUseException",
        eks.create_nodegroup,
        nodegroupName="ng",
        scalingConfig={"minSize": 1, "maxSize": 1, "desiredSize": 1},
        **group,
    )
    # One update at a time: a second change while the first runs is refused.
    gaps.hold = True
    started = eks.update_nodegroup_config(
        clusterName="strict", nodegroupName="ng", scalingConfig={"minSize": 2, "maxSize": 4, "desiredSize": 2}
    )["update"]
    refused("ResourceInUseException", eks.update_nodegroup_version, clusterName="strict", nodegroupName="ng")
    assert eks.describe_nodegroup(clusterName="strict", nodegroupName="ng")["nodegroup"]["status"] == "UPDATING"
    gaps.hold = False
    described = eks.describe_update(name="strict", updateId=started["id"], nodegroupName="ng")["update"]
    assert described["status"] == "Successful"
    assert (
        eks.describe_nodegroup(clusterName="strict", nodegroupName="ng")["nodegroup"]["scalingConfig"]["maxSize"] == 4
    )
    # Injected faults: a config update that ends Failed and changes nothing; a create that ends CREATE_FAILED.
    gaps.fail_config_updates.add("ng")
    failed = eks.update_nodegroup_config(
        clusterName="strict", nodegroupName="ng", scalingConfig={"minSize": 1, "maxSize": 9, "desiredSize": 1}
    )["update"]
    described = eks.describe_update(name="strict", updateId=failed["id"], nodegroupName="ng")["update"]
    assert described["status"] == "Failed" and described["errors"]
    assert (
        eks.describe_nodegroup(clusterName="strict", nodegroupName="ng")["nodegroup"]["scalingConfig"]["maxSize"] == 4
    )
    gaps.fail_creates.add("doomed")
    eks.create_nodegroup(nodegroupName="doomed", scalingConfig={"minSize": 1, "maxSize": 1, "desiredSize": 1}, **group)
    doomed = eks.describe_nodegroup(clusterName="strict", nodegroupName="doomed")["nodegroup"]
    assert doomed["status"] == "CREATE_FAILED" and doomed["health"]["issues"]


async def test_a_private_cluster_in_given_subnets(
    api: httpx.AsyncClient, aws_worker: None, org: Org, moto_aws: MotoAws
) -> None:
    """`privateCluster` closes the public endpoint; node groups go in the given private subnets
    (those of their zones, if they name any); the control plane gets every given subnet."""
    account_id = new_account_id()
    await connect(api, org, moto_aws, account_id)
    audit = EksAuditor(moto_aws, account_id)
    vpc = audit.ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = {
        name: audit.ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for name, cidr, zone in (
            ("private-a", "10.8.0.0/20", "us-east-1a"),
            ("private-b", "10.8.16.0/20", "us-east-1b"),
            ("public-a", "10.8.32.0/20", "us-east-1a"),
        )
    }
    eks = {
        "accountId": account_id,
        "kubernetesVersion": "1.31",
        "privateCluster": True,
        "vpcId": vpc,
        "subnets": {
            "nodes": [{"id": subnet["private-a"], "type": "private"}, {"id": subnet["private-b"], "type": "private"}],
            "edge": [{"id": subnet["public-a"], "type": "public"}],
        },
    }
    zonal = {**EXTRA, "availabilityZones": ["us-east-1b"]}
    document = {
        "apiVersion": "clusterflow.dev/v1",
        "kind": "K8sCluster",
        "spec": {
            "clusterName": "private-eks",
            "provider": "aws",
            "region": REGION,
            "provisioner": {"type": "eks", "eks": eks},
            "clusterSpec": {"dataPlane": {"nodeGroups": [WORKERS, zonal]}},
        },
    }
    response = await api.post("/v1/clusters", json=document, headers=org.headers())
    assert response.status_code == 202, response.text
    operation = await wait_for_operation(api, org.headers(), response.json()["data"]["operationId"], timeout=90)
    assert operation["status"] == "SUCCEEDED", operation

    cluster = audit.cluster("private-eks")
    assert cluster is not None
    config = cluster["resourcesVpcConfig"]
    assert (config["endpointPublicAccess"], config["endpointPrivateAccess"]) == (False, True)
    assert sorted(config["subnetIds"]) == sorted(subnet.values())
    groups = audit.node_groups("private-eks")
    assert sorted(groups["workers"]["subnets"]) == sorted([subnet["private-a"], subnet["private-b"]])
    assert groups["extra"]["subnets"] == [subnet["private-b"]]
    assert groups["workers"]["amiType"] == "AL2_x86_64"  # no amiFamily: EKS's default
    assert audit.network_of(response.json()["data"]["clusterId"])["vpcs"] == []  # nothing created
