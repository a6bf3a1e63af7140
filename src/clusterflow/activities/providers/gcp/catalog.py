"""What GKE offers, read through google-cloud-container: versions per location.

`GetServerConfig` for each configured region (`CLUSTERFLOW_CATALOG_REGIONS`, else the snapshot's;
in the settings' project,
`CLUSTERFLOW_GCP_DEFAULT_PROJECT`, with the control plane's own credentials) gives the master
versions GKE accepts there, its default, and each release channel's default and valid versions.
Versions are kept at minor granularity, as the catalog offers them (GKE resolves a minor to its
newest patch). The container API publishes neither zones nor machine types (those belong to the
Compute Engine API), so they stay the snapshot's (a region the snapshot lacks offers none), and
so does the Autopilot floor.
"""

from __future__ import annotations

import asyncio
import functools

from google.api_core import exceptions as gexc
from google.cloud import container_v1

from clusterflow.activities.providers.gcp.clients import make_client
from clusterflow.activities.providers.gcp.errors import classify_google_error
from clusterflow.catalog.model import (
    ChannelVersions,
    KubernetesVersions,
    ProviderCatalog,
    Region,
    RegionCatalog,
    version_key,
)
from clusterflow.catalog.upstream import UPGRADE_WARNINGS
from clusterflow.settings import Settings


def _minors(versions: list[str]) -> tuple[str, ...]:
    minors = {".".join(v.split("-")[0].split(".")[:2]) for v in versions if v and v[0].isdigit()}
    return tuple(sorted(minors, key=version_key))


def _minor(version: str) -> str:
    return ".".join(version.split("-")[0].split(".")[:2])


def gke_versions(config: container_v1.ServerConfig, snapshot: KubernetesVersions) -> KubernetesVersions:
    supported = _minors(list(config.valid_master_versions))
    if not supported:
        raise ValueError("GKE GetServerConfig offered no master version")
    channels = {}
    for channel in config.channels:
        name = container_v1.ReleaseChannel.Channel(channel.channel).name
        valid = _minors(list(channel.valid_versions))
        if name != "UNSPECIFIED" and valid:
            default = _minor(channel.default_version) if channel.default_version else valid[-1]
            channels[name] = ChannelVersions(default, valid)
    default = _minor(config.default_cluster_version) if config.default_cluster_version else supported[-1]
    return KubernetesVersions(
        default_version=default,
        supported_versions=supported,
        channels=channels,
        autopilot_min_version=snapshot.autopilot_min_version,
        upgrade_warnings=UPGRADE_WARNINGS,
    )


async def read_gke_catalog(settings: Settings, snapshot: ProviderCatalog, region_ids: list[str]) -> list[RegionCatalog]:
    """Each region with GKE's versions there now (see the module doc)."""
    project = settings.gcp_default_project
    if not project:
        raise ValueError("no GCP project to read GKE's versions in: set CLUSTERFLOW_GCP_DEFAULT_PROJECT")
    client = make_client(settings)
    regions: list[RegionCatalog] = []
    for region in (snapshot.region(r) or Region(r, ()) for r in region_ids):
        name = f"projects/{project}/locations/{region.id}"
        try:
            config = await asyncio.to_thread(functools.partial(client.get_server_config, name=name, retry=None))
        except gexc.GoogleAPICallError as err:
            raise classify_google_error(err, f"read GKE's server config in {region.id}") from err
        versions = gke_versions(config, snapshot.kubernetes["gke"])
        regions.append(RegionCatalog(region, tuple(snapshot.machine_types_in(region.id)), {"gke": versions}))
    return regions
