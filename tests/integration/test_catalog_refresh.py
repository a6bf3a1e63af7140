"""The live catalog: the scheduled refresh reads the clouds through their SDKs, and what it stores
is what the catalog routes serve and what deploys are judged by.

The refresh runs as in production: the worker's schedule (`ensure_schedules`) is triggered and
its `CatalogRefresh` workflow runs on a real worker, calling EKS and EC2 on moto (with
`DescribeClusterVersions` from `EksGaps`, which moto lacks), GKE's serverConfig on the fake GKE
and AKS's versions and VM SKUs on the fake ARM. The clouds are then changed (a version published,
one retired, an API failing) and only the public API is used to observe the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.client import Client
from temporalio.service import RPCError

from clusterflow.catalog.refresh import CatalogRefreshResult
from clusterflow.records import catalog as stored_catalog
from clusterflow.settings import Settings
from clusterflow.worker.main import build_worker
from clusterflow.worker.schedules import catalog_schedule_id, ensure_schedules, reverify_schedule_id
from tests.aws_support import REGION, EksAuditor, aws_document, aws_settings, aws_worker, connect, gaps
from tests.conftest import Org, Services, test_settings
from tests.fakes.arm import FakeArm
from tests.fakes.aws import EksGaps, MotoAws, new_account_id
from tests.fakes.gke import FakeGke
from tests.helpers import wait_for_operation

__all__ = ["aws_worker", "gaps"]  # fixtures, used by name
AWS_REGIONS = [REGION, "eu-west-1"]


@pytest.fixture
def settings(services: Services, moto_aws: MotoAws) -> Settings:
    """AWS on moto; the refresh reads two regions (every EC2 offering listing is a second or so)."""
    return aws_settings(services, moto_aws, catalog_regions={"aws": AWS_REGIONS})


async def refresh(client: Client, settings: Settings) -> CatalogRefreshResult:
    """Trigger the worker's catalog schedule once and wait for the workflow it starts."""
    await ensure_schedules(client, settings)
    handle = client.get_schedule_handle(catalog_schedule_id(settings))
    # A run still going (the schedule skips overlaps) ends first.
    for _ in range(400):
        info = (await handle.describe()).info
        if not info.running_actions:
            break
        await asyncio.sleep(0.05)
    before = len(info.recent_actions)
    await handle.trigger()
    for _ in range(400):
        actions = (await handle.describe()).info.recent_actions
        if len(actions) > before:
            break
        await asyncio.sleep(0.05)
    run = client.get_workflow_handle(actions[-1].action.workflow_id, result_type=CatalogRefreshResult)
    result: CatalogRefreshResult = await run.result()
    return result


async def delete_schedules(client: Client, settings: Settings) -> None:
    """Every schedule `ensure_schedules` made for this test's task queue (the listing may lag)."""
    ids = {catalog_schedule_id(settings), reverify_schedule_id(settings)}
    ids |= {s.id async for s in await client.list_schedules() if s.id.endswith(settings.task_queue)}
    for schedule_id in ids:
        with contextlib.suppress(RPCError):  # not created, or deleted meanwhile
            await client.get_schedule_handle(schedule_id).delete()


@pytest.fixture
async def forget_catalogs(pool: asyncpg.Pool, temporal_client: Client, settings: Settings) -> AsyncIterator[None]:
    """The stored catalog is global: put every provider back on the snapshot afterwards."""
    yield
    async with pool.acquire() as conn:
        for provider in ("aws", "gcp", "azure"):
            await stored_catalog.forget(conn, provider)
    await delete_schedules(temporal_client, settings)


def failures(provider: str) -> float:
    return REGISTRY.get_sample_value("clusterflow_catalog_refresh_failures_total", {"provider": provider}) or 0.0


def refreshed_metric(provider: str) -> float | None:
    """The worker's gauge of when it last stored the provider's catalog (its /metrics)."""
    return REGISTRY.get_sample_value("clusterflow_catalog_refreshed_timestamp_seconds", {"provider": provider})


def timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def versions(api: httpx.AsyncClient, org: Org, **params: str) -> dict[str, Any]:
    response = await api.get("/v1/kubernetes-versions", params=params, headers=org.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.usefixtures("aws_worker", "forget_catalogs")
async def test_eks_versions_follow_the_cloud_and_a_failed_refresh_keeps_the_last_good_catalog(
    api: httpx.AsyncClient,
    org: Org,
    moto_aws: MotoAws,
    gaps: EksGaps,
    temporal_client: Client,
    settings: Settings,
) -> None:
    before = await versions(api, org, cloudProvider="aws", provisionerType="eks")
    assert before["source"] == "snapshot"
    assert "1.34" not in before["data"]["supportedVersions"]

    # EKS publishes 1.34 and ends support for 1.29.
    gaps.publish_version("1.34")
    gaps.retire_version("1.29")
    result = await refresh(temporal_client, settings)
    assert [(r.provider, r.error) for r in result.results] == [("aws", "")]

    live = await versions(api, org, cloudProvider="aws", provisionerType="eks")
    assert live["source"] == "live"
    assert live["data"]["supportedVersions"] == ["1.30", "1.31", "1.32", "1.33", "1.34"]
    assert live["data"]["defaultVersion"] == "1.32"
    assert {"fromVersion": "1.33", "toVersion": "1.34"}.items() <= live["data"]["upgradePaths"][-1].items()
    # Regions, zones and machine types come from EC2 too.
    regions = (await api.get("/v1/providers/aws/regions", headers=org.headers())).json()
    assert (regions["source"], regions["data"]) == ("live", AWS_REGIONS)
    zones = (await api.get(f"/v1/providers/aws/regions/{REGION}/zones", headers=org.headers())).json()
    ec2 = moto_aws.client("ec2")
    assert zones["source"] == "live"
    assert zones["data"] == sorted(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"])
    machine = (
        await api.get(f"/v1/providers/aws/regions/{REGION}/machine-types/m5.large", headers=org.headers())
    ).json()
    assert machine.get("source") == "live", machine
    assert machine["data"]["vCPU"] == 2
    assert machine["data"]["timeGenerated"] == machine["refreshedAt"] == live["refreshedAt"]

    # A deploy at the new version is accepted, and EKS gets that version.
    account = new_account_id()
    await connect(api, org, moto_aws, account)
    document = aws_document("cat-new", account, kubernetesVersion="1.34")
    accepted = await api.post("/v1/clusters", json=document, headers=org.headers())
    assert accepted.status_code == 202, accepted.text
    record = await wait_for_operation(api, org.headers(), accepted.json()["data"]["operationId"], timeout=120)
    assert record["status"] == "SUCCEEDED", record
    cluster = EksAuditor(moto_aws, account).cluster("cat-new")
    assert cluster is not None and cluster["version"] == "1.34"

    # The retired one is refused by field, and nothing is left behind.
    refused = await api.post(
        "/v1/clusters", json=aws_document("cat-old", account, kubernetesVersion="1.29"), headers=org.headers()
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "INVALID_SPEC"
    fields = [d["field"] for d in refused.json()["error"]["details"]]
    assert fields == ["spec.provisioner.eks.kubernetesVersion"]
    listed = (await api.get("/v1/clusters", headers=org.headers())).json()["data"]
    assert "cat-old" not in [c["clusterName"] for c in listed]
    assert EksAuditor(moto_aws, account).cluster("cat-old") is None

    # The update planner reads the same catalog: 1.35 is refused until EKS publishes it and a
    # refresh stores it.
    cluster_id = accepted.json()["data"]["clusterId"]

    async def plan_to(version: str) -> dict[str, Any]:
        update = {
            "apiVersion": "clusterflow.dev/v1",
            "kind": "K8sClusterUpdate",
            "spec": {"kubernetesVersion": version, "updateConfig": {"dryRun": True}},
        }
        response = await api.patch(f"/v1/clusters/{cluster_id}", json=update, headers=org.headers())
        assert response.status_code == 200, response.text
        checks = {c["name"]: c["status"] for c in response.json()["data"]["preflightChecks"]}
        return {"passed": response.json()["data"]["validationPassed"], "supported": checks["version-supported"]}

    gaps.publish_version("1.35")
    assert await plan_to("1.35") == {"passed": False, "supported": "FAIL"}
    await refresh(temporal_client, settings)
    assert await plan_to("1.35") == {"passed": True, "supported": "PASS"}
    live = await versions(api, org, cloudProvider="aws", provisionerType="eks")
    assert refreshed_metric("aws") == pytest.approx(timestamp(live["refreshedAt"]))

    # EKS fails: the last good catalog stays, and the failure is counted.
    failed_before = failures("aws")
    gaps.failures["DescribeClusterVersions"] = "AccessDeniedException"
    gaps.publish_version("1.36")
    result = await refresh(temporal_client, settings)
    assert result.results[0].provider == "aws"
    assert "not authorized to perform DescribeClusterVersions" in result.results[0].error
    kept = await versions(api, org, cloudProvider="aws", provisionerType="eks")
    assert kept["source"] == "live"
    assert kept["refreshedAt"] == live["refreshedAt"]
    assert kept["data"]["supportedVersions"] == live["data"]["supportedVersions"]
    assert failures("aws") == failed_before + 1
    assert refreshed_metric("aws") == pytest.approx(timestamp(live["refreshedAt"]))
    assert (await plan_to("1.36"))["supported"] == "FAIL"


# --- GKE and AKS ------------------------------------------------------------------------------

PROJECT = "proj-catalog"
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000cc"
CLIENT_ID, CLIENT_SECRET = "app-catalog", "catalog-secret"


@pytest.fixture
def gke() -> Iterator[FakeGke]:
    fake = FakeGke().start()
    yield fake
    fake.stop()


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    fake = FakeArm(tmp_path).start()
    fake.register_app(CLIENT_ID, CLIENT_SECRET)
    yield fake
    fake.stop()


@pytest.fixture
def clouds_settings(services: Services, gke: FakeGke, arm: FakeArm) -> Settings:
    return test_settings(
        services,
        enabled_providers=["local", "gcp", "azure"],
        gcp_endpoint=gke.url,
        gcp_access_token=gke.token,
        gcp_default_project=PROJECT,
        gcp_poll_seconds=0.05,
        azure_arm_endpoint=arm.url,
        azure_authority_host=arm.url,
        azure_tenant_id=arm.tenant_id,
        azure_client_id=CLIENT_ID,
        azure_client_secret=CLIENT_SECRET,
        azure_ca_bundle=arm.ca_path,
        azure_default_subscription_id=SUBSCRIPTION,
        azure_default_resource_group="rg-catalog",
    )


@pytest.fixture
async def clouds(
    clouds_settings: Settings, temporal_client: Client, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    from clusterflow.api.app import create_app

    app = create_app(clouds_settings)
    async with build_worker(temporal_client, pool, clouds_settings), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterflow.test") as client:
            yield client
        async with pool.acquire() as conn:
            for provider in ("gcp", "azure"):
                await stored_catalog.forget(conn, provider)
        await delete_schedules(temporal_client, clouds_settings)


async def test_gke_and_aks_versions_and_vm_sizes_follow_the_clouds(
    clouds: httpx.AsyncClient, org: Org, gke: FakeGke, arm: FakeArm, temporal_client: Client, clouds_settings: Settings
) -> None:
    gke.server_versions["1.34"] = "1.34.0-gke.1000"
    del gke.server_versions["1.29"]
    arm.aks_versions["1.34"] = False  # generally available
    arm.aks_versions["1.35"] = True  # preview: not offered
    del arm.aks_versions["1.30"]
    del arm.aks_versions["1.32"]  # the snapshot's default, which a deploy naming no version gets
    arm.vm_skus["Standard_D16s_v6"] = (16, 64, "x64")
    result = await refresh(temporal_client, clouds_settings)
    assert sorted((r.provider, r.error) for r in result.results) == [("azure", ""), ("gcp", "")]

    gke_versions = await versions(clouds, org, cloudProvider="gcp", provisionerType="gke", region="us-central1")
    assert gke_versions["source"] == "live"
    assert gke_versions["data"]["supportedVersions"] == ["1.30", "1.31", "1.32", "1.33", "1.34"]
    rapid = await versions(clouds, org, cloudProvider="gcp", provisionerType="gke", releaseChannel="RAPID")
    assert rapid["data"]["channelVersions"]["RAPID"]["validVersions"] == ["1.32", "1.33", "1.34"]

    aks_versions = await versions(clouds, org, cloudProvider="azure", provisionerType="aks", region="eastus")
    assert aks_versions["source"] == "live"
    assert aks_versions["data"]["supportedVersions"] == ["1.31", "1.33", "1.34"]
    sizes = (await clouds.get("/v1/providers/azure/regions/eastus/machine-types", headers=org.headers())).json()
    assert sizes["source"] == "live"
    assert {m["name"] for m in sizes["data"]} == set(arm.vm_skus)
    new = next(m for m in sizes["data"] if m["name"] == "Standard_D16s_v6")
    assert (new["vCPU"], new["memoryMb"], new["infos"]["zones"]) == (16, 65536, ["eastus-1", "eastus-2", "eastus-3"])

    # The dry run judges by the same catalog: GKE's retired 1.29 is refused by field, 1.34 accepted.
    def gke_spec(version: str) -> dict[str, Any]:
        return {
            "apiVersion": "clusterflow.dev/v1",
            "kind": "K8sCluster",
            "spec": {
                "clusterName": "cat-gke",
                "provider": "gcp",
                "region": "us-central1",
                "provisioner": {"type": "gke", "gke": {"projectId": PROJECT, "kubernetesVersion": version}},
                "clusterSpec": {
                    "dataPlane": {
                        "nodeGroups": [
                            {"name": "workers", "machineTypes": ["e2-standard-4"], "minNode": 1, "maxNode": 2}
                        ]
                    }
                },
            },
        }

    old = await clouds.post("/v1/clusters?dryRun=true", json=gke_spec("1.29"), headers=org.headers())
    assert old.status_code == 422, old.text
    assert [d["field"] for d in old.json()["error"]["details"]] == ["spec.provisioner.gke.kubernetesVersion"]
    ok = await clouds.post("/v1/clusters?dryRun=true", json=gke_spec("1.34"), headers=org.headers())
    assert ok.status_code == 200, ok.text
    accepted = await clouds.post("/v1/clusters", json=gke_spec("1.34"), headers=org.headers())
    assert accepted.status_code == 202, accepted.text
    record = await wait_for_operation(clouds, org.headers(), accepted.json()["data"]["operationId"], timeout=60)
    assert record["status"] == "SUCCEEDED", record
    created = gke.cluster(PROJECT, "us-central1", "cat-gke")
    assert created is not None and created["currentMasterVersion"] == "1.34.0-gke.1000"

    # AKS: a deploy naming no version gets the default the provider sends (the snapshot's 1.32),
    # which AKS no longer offers: refused by field before anything runs; 1.34 is accepted.
    def aks_spec(**aks: str) -> dict[str, Any]:
        return {
            "apiVersion": "clusterflow.dev/v1",
            "kind": "K8sCluster",
            "spec": {
                "clusterName": "cat-aks",
                "provider": "azure",
                "region": "eastus",
                "provisioner": {"type": "aks", "aks": {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg", **aks}},
                "clusterSpec": {
                    "dataPlane": {
                        "nodeGroups": [
                            {"name": "workers", "machineTypes": ["Standard_D16s_v6"], "minNode": 1, "maxNode": 2}
                        ]
                    }
                },
            },
        }

    unnamed = await clouds.post("/v1/clusters?dryRun=true", json=aks_spec(), headers=org.headers())
    assert unnamed.status_code == 422, unnamed.text
    assert [d["field"] for d in unnamed.json()["error"]["details"]] == ["spec.provisioner.aks.kubernetesVersion"]
    named = await clouds.post(
        "/v1/clusters?dryRun=true", json=aks_spec(kubernetesVersion="1.34"), headers=org.headers()
    )
    assert named.status_code == 200, named.text


@pytest.mark.usefixtures("aws_worker", "forget_catalogs")
async def test_a_new_installation_reads_the_catalog_when_its_schedule_is_created(
    api: httpx.AsyncClient, org: Org, gaps: EksGaps, temporal_client: Client, settings: Settings
) -> None:
    assert (await versions(api, org, cloudProvider="aws", provisionerType="eks"))["source"] == "snapshot"
    gaps.publish_version("1.34")

    # The worker's start-up with the production default: no trigger by anyone.
    await ensure_schedules(temporal_client, settings.model_copy(update={"catalog_refresh_when_created": True}))
    handle = temporal_client.get_schedule_handle(catalog_schedule_id(settings))
    for _ in range(400):
        actions = (await handle.describe()).info.recent_actions
        if actions:
            break
        await asyncio.sleep(0.05)
    assert len(actions) == 1
    run = temporal_client.get_workflow_handle(actions[0].action.workflow_id, result_type=CatalogRefreshResult)
    assert [(r.provider, r.error) for r in (await run.result()).results] == [("aws", "")]
    live = await versions(api, org, cloudProvider="aws", provisionerType="eks")
    assert live["source"] == "live" and "1.34" in live["data"]["supportedVersions"]

    # A worker restarting finds the schedule in place and does not read the clouds again.
    await ensure_schedules(temporal_client, settings.model_copy(update={"catalog_refresh_when_created": True}))
    await asyncio.sleep(0.5)
    assert len((await handle.describe()).info.recent_actions) == 1
