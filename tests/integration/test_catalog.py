"""The provider catalog through the API, and the catalog data's own consistency."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from clusterflow.activities.providers import local as local_provider
from clusterflow.api.app import create_app
from clusterflow.catalog import (
    CATALOGS,
    KubernetesVersions,
    MachineType,
    Region,
    RegionCatalog,
    parse_cpu,
    parse_memory_mb,
    version_key,
)
from clusterflow.catalog import local as local_catalog
from clusterflow.catalog.stored import merged_catalog, region_catalog, region_document
from tests.conftest import Org, Services, test_settings


@pytest.fixture
async def catalog_api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    settings = test_settings(services, enabled_providers=["local", "aws", "gcp", "azure"])
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterflow.test") as client:
            yield client


async def get_data(client: httpx.AsyncClient, org: Org, path: str, **params: object) -> object:
    response = await client.get(path, params=params, headers=org.headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_providers_regions_and_zones(catalog_api: httpx.AsyncClient, org: Org) -> None:
    assert await get_data(catalog_api, org, "/v1/providers") == ["local", "aws", "gcp", "azure"]
    regions = await get_data(catalog_api, org, "/v1/providers/gcp/regions")
    assert "us-central1" in regions
    zones = await get_data(catalog_api, org, "/v1/providers/gcp/regions/us-central1/zones")
    assert zones == ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]
    assert await get_data(catalog_api, org, "/v1/providers/azure/regions/eastus/zones") == [
        "eastus-1",
        "eastus-2",
        "eastus-3",
    ]

    unknown_region = await catalog_api.get("/v1/providers/gcp/regions/mars-1/zones", headers=org.headers())
    assert unknown_region.status_code == 404
    assert unknown_region.json()["error"]["code"] == "REGION_NOT_FOUND"
    unknown_provider = await catalog_api.get("/v1/providers/oracle/regions", headers=org.headers())
    assert unknown_provider.status_code == 404
    assert unknown_provider.json()["error"]["code"] == "PROVIDER_NOT_FOUND"


async def test_only_enabled_providers_are_offered(api: httpx.AsyncClient, org: Org) -> None:
    assert await get_data(api, org, "/v1/providers") == ["local"]
    response = await api.get("/v1/providers/gcp/regions", headers=org.headers())
    assert response.status_code == 404


async def test_machine_types_are_filtered_like_the_reference(catalog_api: httpx.AsyncClient, org: Org) -> None:
    path = "/v1/providers/gcp/regions/us-central1/machine-types"
    everything = await get_data(catalog_api, org, path)
    first = next(m for m in everything if m["name"] == "e2-standard-4")
    assert first == {
        "name": "e2-standard-4",
        "vCPU": 4,
        "memoryMb": 16384,
        "category": "GeneralPurpose",
        "architecture": ["x86_64"],
        "zone": "us-central1-a",
        "osPlatform": "Linux",
        "onDemandPricePerHour": "0.1340",
        "spotPricePerHour": "0.0402",
        "timeGenerated": CATALOGS["gcp"].time_generated,
        "infos": {"zones": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]},
    }

    sized = await get_data(catalog_api, org, path, cpuMin="3", cpuMax="8000m", memMin="16Gi", memMax="32768Mi")
    assert sized
    assert all(3 <= m["vCPU"] <= 8 and 16384 <= m["memoryMb"] <= 32768 for m in sized)
    assert {m["name"] for m in sized} < {m["name"] for m in everything}

    arm = await get_data(catalog_api, org, path, architecture="arm64")
    assert [m["name"] for m in arm] == ["t2a-standard-4"]
    in_zone_c = await get_data(catalog_api, org, path, architecture="arm64", zoneId="us-central1-c")
    assert in_zone_c == []
    gpus = await get_data(catalog_api, org, path, category="GPU", zoneId="us-central1-b")
    assert [(m["name"], m["zone"]) for m in gpus] == [("g2-standard-8", "us-central1-b")]

    bad = await catalog_api.get(path, params={"memMin": "lots"}, headers=org.headers())
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "memMin"
    bad_category = await catalog_api.get(path, params={"category": "Tiny"}, headers=org.headers())
    assert bad_category.status_code == 422
    wrong_zone = await catalog_api.get(path, params={"zoneId": "europe-west1-b"}, headers=org.headers())
    assert wrong_zone.status_code == 404
    assert wrong_zone.json()["error"]["code"] == "ZONE_NOT_FOUND"

    one = await get_data(
        catalog_api, org, f"{path}/Standard_D4s_v5".replace("gcp", "azure").replace("us-central1", "eastus")
    )
    assert one["vCPU"] == 4
    assert one["zone"] == "eastus-1"
    gpu_elsewhere = await catalog_api.get(
        f"{path}/g2-standard-8", params={"zoneId": "us-central1-c"}, headers=org.headers()
    )
    assert gpu_elsewhere.status_code == 404
    assert gpu_elsewhere.json()["error"]["code"] == "MACHINE_TYPE_NOT_FOUND"


async def test_kubernetes_versions_with_channels_autopilot_and_upgrade_paths(
    catalog_api: httpx.AsyncClient, org: Org
) -> None:
    gke = await get_data(catalog_api, org, "/v1/kubernetes-versions", cloudProvider="gcp", provisionerType="gke")
    assert gke["defaultVersion"] == "1.32"
    assert set(gke["channelVersions"]) == {"RAPID", "REGULAR", "STABLE", "EXTENDED"}
    assert gke["channelVersions"]["STABLE"] == {"defaultVersion": "1.31", "validVersions": ["1.30", "1.31"]}
    assert gke["error"] is None
    paths = {(p["fromVersion"], p["toVersion"]): p for p in gke["upgradePaths"]}
    assert ("1.31", "1.32") in paths
    assert ("1.30", "1.32") not in paths, "control planes move one minor at a time"
    assert paths[("1.31", "1.32")]["upgradeType"] == "MINOR"
    assert any("v1beta3" in w for w in paths[("1.31", "1.32")]["warnings"])

    rapid = await get_data(
        catalog_api, org, "/v1/kubernetes-versions", cloudProvider="gcp", provisionerType="gke", releaseChannel="RAPID"
    )
    assert rapid["supportedVersions"] == ["1.31", "1.32", "1.33"]
    assert rapid["defaultVersion"] == "1.33"
    assert list(rapid["channelVersions"]) == ["RAPID"]

    autopilot = await get_data(
        catalog_api, org, "/v1/kubernetes-versions", cloudProvider="gcp", provisionerType="gke", autopilot="true"
    )
    assert "1.29" not in autopilot["supportedVersions"]
    assert autopilot["channelVersions"]["EXTENDED"]["validVersions"] == ["1.30", "1.31"]

    aks = await get_data(
        catalog_api, org, "/v1/kubernetes-versions", cloudProvider="azure", provisionerType="aks", region="westeurope"
    )
    assert aks["channelVersions"] == {}
    assert aks["defaultVersion"] in aks["supportedVersions"]

    local = await get_data(catalog_api, org, "/v1/kubernetes-versions", cloudProvider="local", provisionerType="local")
    assert local["supportedVersions"] == list(local_provider.KUBERNETES_VERSIONS)
    assert local["defaultVersion"] == local_provider.DEFAULT_KUBERNETES_VERSION

    for params, field in (
        ({"cloudProvider": "aws", "provisionerType": "gke"}, "provisionerType"),
        ({"cloudProvider": "aws", "provisionerType": "eks", "releaseChannel": "RAPID"}, "releaseChannel"),
        ({"cloudProvider": "gcp", "provisionerType": "gke", "region": "eastus"}, "region"),
    ):
        response = await catalog_api.get("/v1/kubernetes-versions", params=params, headers=org.headers())
        assert response.status_code == 422, params
        assert response.json()["error"]["details"][0]["field"] == field


async def test_until_a_refresh_every_answer_says_it_is_the_shipped_snapshot(
    catalog_api: httpx.AsyncClient, org: Org
) -> None:
    providers = (await catalog_api.get("/v1/providers", headers=org.headers())).json()
    assert providers["catalogs"] == [
        {"provider": p, "refreshedAt": CATALOGS[p].time_generated, "source": "snapshot"}
        for p in ("local", "aws", "gcp", "azure")
    ]
    for path, params in (
        ("/v1/providers/aws/regions", {}),
        ("/v1/providers/aws/regions/us-east-1/zones", {}),
        ("/v1/providers/aws/regions/us-east-1/machine-types", {}),
        ("/v1/providers/aws/regions/us-east-1/machine-types/m5.large", {}),
        ("/v1/kubernetes-versions", {"cloudProvider": "aws", "provisionerType": "eks"}),
    ):
        body = (await catalog_api.get(path, params=params, headers=org.headers())).json()
        assert (body["source"], body["refreshedAt"]) == ("snapshot", CATALOGS["aws"].time_generated), path


def test_stored_regions_make_a_provider_catalog_over_the_snapshot() -> None:
    """What a refresh stores per region reads back as one provider catalog: the regions read,
    machine types in exactly the zones the cloud named, versions per region, and the default
    region's versions provider-wide; a provisioner not read (self-hosted) keeps the snapshot's."""
    snapshot = CATALOGS["azure"]
    east = RegionCatalog(
        Region("eastus", ("eastus-1", "eastus-2")),
        (MachineType("Standard_D2s_v5", 2, 8192, "GeneralPurpose", zones=("eastus-1",)),),
        {"aks": KubernetesVersions("1.33", ("1.32", "1.33", "1.34"))},
    )
    west = RegionCatalog(
        Region("westus2", ("westus2-1",)),
        (MachineType("Standard_D2s_v5", 2, 8192, "GeneralPurpose", zones=("westus2-1",)),),
        {"aks": KubernetesVersions("1.32", ("1.31", "1.32"))},
    )
    stored = [region_catalog(r.region.id, json.loads(json.dumps(region_document(r)))) for r in (west, east)]
    merged = merged_catalog(snapshot, stored, "2026-11-24T06:00:00Z")
    assert (merged.source, merged.refreshed_at) == ("live", "2026-11-24T06:00:00Z")
    assert [r.id for r in merged.regions] == ["eastus", "westus2"]  # the snapshot's order
    assert merged.machine_types[0].zones == ("eastus-1", "westus2-1")
    assert [m.name for m in merged.machine_types_in("westus2")] == ["Standard_D2s_v5"]
    in_west, everywhere = merged.versions("aks", "westus2"), merged.versions("aks")
    assert in_west is not None and everywhere is not None
    assert (in_west.default_version, in_west.supported_versions) == ("1.32", ("1.31", "1.32"))
    # The default region's versions provider-wide, with upstream's upgrade warnings.
    assert (everywhere.default_version, everywhere.supported_versions) == ("1.33", ("1.32", "1.33", "1.34"))
    assert everywhere.upgrade_path("1.33", "1.34") is not None
    assert merged.kubernetes["selfHosted"] is snapshot.kubernetes["selfHosted"]
    assert merged_catalog(snapshot, [], "now") is snapshot


async def test_catalog_needs_an_api_key(catalog_api: httpx.AsyncClient) -> None:
    assert (await catalog_api.get("/v1/providers")).status_code == 401


@pytest.mark.parametrize("provider", sorted(CATALOGS))
def test_catalog_data_is_consistent(provider: str) -> None:
    catalog = CATALOGS[provider]
    zones = {z for r in catalog.regions for z in r.zones}
    assert catalog.region(catalog.default_region) is not None
    for machine in catalog.machine_types:
        assert set(machine.zones) <= zones, machine.name
        assert any(catalog.machine_types_in(r.id) for r in catalog.regions)
    for versions in catalog.kubernetes.values():
        assert versions.default_version in versions.supported_versions
        assert list(versions.supported_versions) == sorted(versions.supported_versions, key=version_key)
        for channel in versions.channels.values():
            assert channel.default_version in channel.valid_versions
            assert set(channel.valid_versions) <= set(versions.supported_versions)


def test_local_provider_reads_the_catalog() -> None:
    assert local_provider.MACHINE_TYPES is local_catalog.MACHINE_TYPES
    assert {m.name for m in CATALOGS["local"].machine_types} == set(local_catalog.MACHINE_TYPES)


def test_quantities() -> None:
    assert parse_cpu("500m") == 0.5
    assert parse_cpu("2") == 2
    assert parse_memory_mb("1Gi") == 1024
    assert parse_memory_mb("512Mi") == 512
    with pytest.raises(ValueError, match="memory quantity"):
        parse_memory_mb("8 GB")
