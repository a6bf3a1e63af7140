"""A dry run refuses what the deploy would refuse, and the real deploy refuses it before writing.

For each provider: a valid document, then a table of mutations (bad version, unknown region,
unknown machine type, zone of another region, invalid AKS pool name, selfHosted, each field no
provider honours, a missing account or project). Each mutation must be a 422 `INVALID_SPEC`
naming the field, from the dry run and from the real POST alike, leaving no cluster and no
deploy operation behind. The parity half: the spec-only mutations are refused by
`check_deploy_spec`, the function the providers' VALIDATE phases call, with the same field.

Everything goes through the public API of one app shared by the module (422s need no worker);
the only worker runs once, to connect the AWS accounts through the API against moto.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from clusterflow.api.app import create_app
from clusterflow.api.schemas.clusters import ClusterSpec
from clusterflow.catalog.spec_checks import check_deploy_spec
from clusterflow.records.organizations import create_api_key, create_organization
from clusterflow.settings import Settings
from clusterflow.worker.main import build_worker
from tests.cloud import cloud_document
from tests.conftest import Org, Services, test_settings
from tests.fakes.aws import EksGaps, MotoAws, new_account_id
from tests.helpers import deploy_document, wait_for_operation

Mutation = Callable[[dict[str, Any]], None]


# --- shared app, organizations, accounts ----------------------------------------------------


@pytest.fixture(scope="module")
def parity_settings(services: Services, moto_aws: MotoAws) -> Settings:
    # No default GCP project and no default Azure subscription: the documents name their own,
    # so a document without one is refused.
    return test_settings(
        services,
        enabled_providers=["local", "aws", "gcp", "azure"],
        aws_endpoint_url=moto_aws.url,
        aws_region="us-east-1",
        aws_connect_bucket=f"cf-connect-{uuid.uuid4().hex[:8]}",
        aws_connect_check_initial_seconds=0.1,
        aws_connect_check_max_seconds=0.2,
    )


@pytest.fixture(scope="module")
async def client(parity_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(parity_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterflow.test") as api:
            yield api


async def _new_org(pool: asyncpg.Pool) -> Org:
    org_id = await create_organization(pool, f"parity-{uuid.uuid4().hex[:8]}")
    _, key = await create_api_key(pool, org_id, "owner", "owner")
    return Org(org_id, key)


async def _connect_aws(api: httpx.AsyncClient, org: Org, moto: MotoAws, account_id: str, level: str) -> None:
    body = {"clusterName": "prod", "destinationAccountId": account_id, "level": level, "targetRegion": "us-east-1"}
    response = await api.post("/v1/cloud-accounts/aws", json=body, headers=org.headers())
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    template = (await asyncio.to_thread(httpx.get, accepted["preSignedTargetCFTemplateURL"])).text
    cfn = moto.client("cloudformation", moto.customer_session(account_id))
    cfn.create_stack(StackName="clusterflow-connect", TemplateBody=template, Capabilities=["CAPABILITY_NAMED_IAM"])
    record = await wait_for_operation(api, org.headers(), accepted["id"], timeout=60)
    assert record["status"] == "SUCCEEDED", record


@pytest.fixture(scope="module")
async def accounts(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    temporal_client: Client,
    parity_settings: Settings,
    moto_aws: MotoAws,
) -> dict[str, Any]:
    """One organization with a `manage` AWS account, one with only a `read` one."""
    manage_org, read_org = await _new_org(pool), await _new_org(pool)
    manage_account, read_account = new_account_id(), new_account_id()
    async with build_worker(temporal_client, pool, parity_settings, aws_sessions=EksGaps().session_factory()):
        await asyncio.gather(
            _connect_aws(client, manage_org, moto_aws, manage_account, "manage"),
            _connect_aws(client, read_org, moto_aws, read_account, "read"),
        )
    return {"org": manage_org, "account": manage_account, "read_org": read_org, "read_account": read_account}


@pytest.fixture(scope="module")
async def shared_org(pool: asyncpg.Pool) -> Org:
    return await _new_org(pool)


# --- valid documents --------------------------------------------------------------------------


def local_doc() -> dict[str, Any]:
    return deploy_document("parity-local")


def aws_doc(account_id: str) -> dict[str, Any]:
    return cloud_document(
        "parity-eks",
        "aws",
        "us-east-1",
        {"type": "eks", "eks": {"accountId": account_id, "kubernetesVersion": "1.31", "tags": {"team": "a"}}},
        [
            {"name": "workers", "machineTypes": ["m6i.large"], "minNode": 1, "maxNode": 3},
            {"name": "batch", "machineTypes": ["medium"], "minNode": 0, "maxNode": 5, "availabilityZones": []},
        ],
    )


def gke_doc() -> dict[str, Any]:
    return cloud_document(
        "parity-gke",
        "gcp",
        "us-central1",
        {"type": "gke", "gke": {"projectId": "proj-parity", "kubernetesVersion": "1.32", "releaseChannel": "REGULAR"}},
        [
            {"name": "workers", "machineTypes": ["e2-standard-4"], "minNode": 1, "maxNode": 3},
            {"name": "batch", "machineTypes": ["n2-standard-8"], "minNode": 0, "maxNode": 5},
        ],
    )


def aks_doc() -> dict[str, Any]:
    return cloud_document(
        "parity-aks",
        "azure",
        "eastus",
        {"type": "aks", "aks": {"subscriptionId": str(uuid.uuid4()), "resourceGroup": "rg-parity"}},
        [
            {"name": "workers", "machineTypes": ["Standard_D4s_v5"], "minNode": 1, "maxNode": 3},
            {
                "name": "batch",
                "machineTypes": ["Standard_D8s_v5"],
                "minNode": 0,
                "maxNode": 5,
                "availabilityZones": ["eastus-1", "2"],
            },
        ],
    )


# --- mutations: (id, mutate(spec), field the 422 names, spec-only?) -------------------------


def _set(path: str, value: Any) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        keys = path.split(".")
        target: Any = spec
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = copy.deepcopy(value)

    return mutate


def _both(*mutations: Mutation) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        for m in mutations:
            m(spec)

    return mutate


_DELETE = object()
GROUP0 = "spec.clusterSpec.dataPlane.nodeGroups[0]"
GROUP1 = "spec.clusterSpec.dataPlane.nodeGroups[1]"
SELF_HOSTED = _set("provisioner", {"type": "selfHosted", "selfHosted": {"kubernetesVersion": "1.32"}})
CREDENTIALS = {"type": "static", "data": {"token": "x"}}

LOCAL_CASES = [
    ("version", _set("provisioner.local.kubernetesVersion", "1.20"), "spec.provisioner.local.kubernetesVersion"),
    ("region", _set("region", "nowhere-9"), "spec.region"),
    ("machine", _set("clusterSpec.dataPlane.nodeGroups.1.machineTypes", ["gigantic"]), f"{GROUP1}.machineTypes[0]"),
    (
        "control-plane-machine",
        _set("clusterSpec.controlPlane.nodeGroup.machineTypes", ["small", "gigantic"]),
        "spec.clusterSpec.controlPlane.nodeGroup.machineTypes[1]",
    ),
    (
        "zone",
        _set("clusterSpec.dataPlane.nodeGroups.0.availabilityZones", ["local-2a"]),
        f"{GROUP0}.availabilityZones[0]",
    ),
]

EKS_CASES = [
    ("version", _set("provisioner.eks.kubernetesVersion", "1.20"), "spec.provisioner.eks.kubernetesVersion"),
    ("region", _set("region", "nowhere-9"), "spec.region"),
    ("machine", _set("clusterSpec.dataPlane.nodeGroups.1.machineTypes", ["gigantic"]), f"{GROUP1}.machineTypes[0]"),
    (
        "zone",
        _set("clusterSpec.dataPlane.nodeGroups.0.availabilityZones", ["us-west-2a"]),
        f"{GROUP0}.availabilityZones[0]",
    ),
    ("ami", _set("provisioner.eks.amiFamily", "Windows"), "spec.provisioner.eks.amiFamily"),
    ("self-hosted", SELF_HOSTED, "spec.provisioner.type"),
    ("credentials", _set("provisioner.eks.credentials", CREDENTIALS), "spec.provisioner.eks.credentials"),
    (
        "subnet-cidr",
        _set("provisioner.eks.subnets", {"a": [{"cidr": "10.0.0.0/24", "type": "private"}]}),
        "spec.provisioner.eks.subnets.a[0].cidr",
    ),
    (
        "vpc-one-subnet",
        _both(_set("provisioner.eks.vpcId", "vpc-1"), _set("provisioner.eks.subnets", {"a": [{"id": "subnet-1"}]})),
        "spec.provisioner.eks.subnets",
    ),
    (
        "subnets-without-vpc",
        _set("provisioner.eks.subnets", {"a": [{"id": "subnet-1"}, {"id": "subnet-2"}]}),
        "spec.provisioner.eks.subnets",
    ),
    (
        "vpc-and-cidr",
        _both(
            _set("provisioner.eks.vpcId", "vpc-1"),
            _set("provisioner.eks.vpcCIDR", "10.1.0.0/16"),
            _set("provisioner.eks.subnets", {"a": [{"id": "subnet-1"}, {"id": "subnet-2"}]}),
        ),
        "spec.provisioner.eks.vpcCIDR",
    ),
]

GKE_CASES = [
    ("version", _set("provisioner.gke.kubernetesVersion", "1.20"), "spec.provisioner.gke.kubernetesVersion"),
    ("channel-version", _set("provisioner.gke.releaseChannel", "STABLE"), "spec.provisioner.gke.kubernetesVersion"),
    (
        "autopilot-version",
        _both(
            _set("provisioner.gke.autopilot", True),
            _set("provisioner.gke.kubernetesVersion", "1.29"),
            _set("provisioner.gke.releaseChannel", _DELETE),
        ),
        "spec.provisioner.gke.kubernetesVersion",
    ),
    ("region", _set("region", "nowhere-9"), "spec.region"),
    ("machine", _set("clusterSpec.dataPlane.nodeGroups.1.machineTypes", ["gigantic"]), f"{GROUP1}.machineTypes[0]"),
    (
        "zone",
        _set("clusterSpec.dataPlane.nodeGroups.0.availabilityZones", ["us-east1-b"]),
        f"{GROUP0}.availabilityZones[0]",
    ),
    (
        "second-machine",
        _set("clusterSpec.dataPlane.nodeGroups.0.machineTypes", ["e2-standard-4", "e2-standard-8"]),
        f"{GROUP0}.machineTypes[1]",
    ),
    ("self-hosted", SELF_HOSTED, "spec.provisioner.type"),
    ("network-cidr", _set("provisioner.gke.networkCIDR", "10.0.0.0/16"), "spec.provisioner.gke.networkCIDR"),
    ("credentials", _set("provisioner.gke.credentials", CREDENTIALS), "spec.provisioner.gke.credentials"),
    (
        "master-cidr",
        _set("provisioner.gke.masterIPv4CidrBlock", "172.16.0.0/28"),
        "spec.provisioner.gke.masterIPv4CidrBlock",
    ),
]

AKS_CASES = [
    ("version", _set("provisioner.aks.kubernetesVersion", "1.20"), "spec.provisioner.aks.kubernetesVersion"),
    ("region", _set("region", "nowhere-9"), "spec.region"),
    ("machine", _set("clusterSpec.dataPlane.nodeGroups.1.machineTypes", ["gigantic"]), f"{GROUP1}.machineTypes[0]"),
    (
        "zone",
        _set("clusterSpec.dataPlane.nodeGroups.1.availabilityZones", ["westus2-1"]),
        f"{GROUP1}.availabilityZones[0]",
    ),
    ("pool-name", _set("clusterSpec.dataPlane.nodeGroups.0.name", "general-workers"), f"{GROUP0}.name"),
    (
        "system-pool-name",
        _set(
            "clusterSpec.controlPlane",
            {"nodeGroup": {"name": "batch", "machineTypes": ["Standard_D2s_v5"], "minNode": 1, "maxNode": 1}},
        ),
        f"{GROUP1}.name",
    ),
    (
        "second-machine",
        _set("clusterSpec.dataPlane.nodeGroups.0.machineTypes", ["Standard_D4s_v5", "Standard_D8s_v5"]),
        f"{GROUP0}.machineTypes[1]",
    ),
    ("self-hosted", SELF_HOSTED, "spec.provisioner.type"),
    ("credentials", _set("provisioner.aks.credentials", CREDENTIALS), "spec.provisioner.aks.credentials"),
    ("plugin-mode", _set("provisioner.aks.networkPluginMode", "overlay"), "spec.provisioner.aks.networkPluginMode"),
]

# Refused for what the database knows (no account, project or subscription): not spec-only.
ACCOUNT_CASES = [
    ("gcp", "no-project", _set("provisioner.gke.projectId", _DELETE), "spec.provisioner.gke.projectId"),
    (
        "azure",
        "no-subscription",
        _set("provisioner.aks.subscriptionId", _DELETE),
        "spec.provisioner.aks.subscriptionId",
    ),
    (
        "azure",
        "no-resource-group",
        _set("provisioner.aks.resourceGroup", _DELETE),
        "spec.provisioner.aks.resourceGroup",
    ),
    ("aws", "unknown-account", _set("provisioner.eks.accountId", "999999999999"), "spec.provisioner.eks.accountId"),
    ("aws", "no-account", _set("provisioner.eks.accountId", _DELETE), "spec.provisioner"),  # an org without any
    ("aws", "read-level", lambda spec: None, "spec.provisioner.eks.accountId"),  # an org with only a `read` one
]

SPEC_CASES = [
    *[("local", *case) for case in LOCAL_CASES],
    *[("aws", *case) for case in EKS_CASES],
    *[("gcp", *case) for case in GKE_CASES],
    *[("azure", *case) for case in AKS_CASES],
]


def _document(provider: str, accounts: dict[str, Any]) -> dict[str, Any]:
    if provider == "aws":
        return aws_doc(accounts["account"])
    return {"local": local_doc, "gcp": gke_doc, "azure": aks_doc}[provider]()


async def _left_behind(pool: asyncpg.Pool, org: Org, name: str) -> tuple[int, int]:
    clusters = await pool.fetchval(
        "SELECT count(*) FROM clusters WHERE organization_id = $1 AND name = $2", org.id, name
    )
    deploys = await pool.fetchval(
        "SELECT count(*) FROM operations WHERE organization_id = $1 AND operation_type = 'CLUSTER_DEPLOY'", org.id
    )
    return int(clusters), int(deploys)


async def _assert_refused_everywhere(
    client: httpx.AsyncClient, pool: asyncpg.Pool, org: Org, doc: dict[str, Any], field: str
) -> None:
    dry = await client.post("/v1/clusters", params={"dryRun": "true"}, json=doc, headers=org.headers())
    assert dry.status_code == 422, dry.text
    body = dry.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == "INVALID_SPEC", body
    fields = [d["field"] for d in body["error"]["details"]]
    assert field in fields, body
    assert body["message"].startswith(f"invalid deploy spec: {fields[0]}:"), body

    real = await client.post(
        "/v1/clusters", json=doc, headers=org.headers() | {"Idempotency-Key": f"parity-{uuid.uuid4().hex}"}
    )
    assert real.status_code == 422, real.text
    assert real.json()["error"] == body["error"], "the real deploy refuses exactly as its dry run"
    assert await _left_behind(pool, org, doc["spec"]["clusterName"]) == (0, 0)


@pytest.mark.parametrize(
    ("provider", "mutation", "field"),
    [pytest.param(p, m, f, id=f"{p}-{name}") for p, name, m, f in SPEC_CASES],
)
async def test_a_spec_the_provider_would_refuse_is_a_422_from_dry_run_and_deploy_alike(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    accounts: dict[str, Any],
    provider: str,
    mutation: Mutation,
    field: str,
) -> None:
    org: Org = accounts["org"]
    doc = _document(provider, accounts)
    mutation(doc["spec"])
    await _assert_refused_everywhere(client, pool, org, doc, field)

    # Parity: the function the provider's VALIDATE phase calls refuses the same spec, as VALIDATE
    # receives it (the normalized spec), naming the same field.
    normalized = ClusterSpec.model_validate(doc["spec"]).model_dump(mode="json", exclude_none=True)
    assert field in [p.field for p in check_deploy_spec(normalized)]


@pytest.mark.parametrize(
    ("provider", "mutation", "field", "case"),
    [pytest.param(p, m, f, name, id=f"{p}-{name}") for p, name, m, f in ACCOUNT_CASES],
)
async def test_a_deploy_without_its_account_or_project_is_a_422_before_anything_is_written(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    accounts: dict[str, Any],
    shared_org: Org,
    provider: str,
    mutation: Mutation,
    field: str,
    case: str,
) -> None:
    org: Org = {"no-account": shared_org, "read-level": accounts["read_org"]}.get(case, accounts["org"])
    doc = _document(provider, accounts)
    if case == "read-level":
        doc["spec"]["provisioner"]["eks"]["accountId"] = accounts["read_account"]
    mutation(doc["spec"])
    await _assert_refused_everywhere(client, pool, org, doc, field)
    details = (await client.post("/v1/clusters?dryRun=true", json=doc, headers=org.headers())).json()["error"][
        "details"
    ]
    expected_type = {"read-level": "cloud_access_level_too_low", "no-account": "cloud_account_not_connected"}
    if case in expected_type:
        assert details[0]["type"] == expected_type[case], details
        assert "POST /v1/cloud-accounts/aws" in details[0]["message"]
    assert check_deploy_spec(ClusterSpec.model_validate(doc["spec"]).model_dump(mode="json", exclude_none=True)) == []


@pytest.mark.parametrize("provider", ["local", "aws", "gcp", "azure"])
async def test_a_valid_document_passes_the_dry_run_saying_what_was_checked(
    client: httpx.AsyncClient, pool: asyncpg.Pool, accounts: dict[str, Any], provider: str
) -> None:
    org: Org = accounts["org"]
    doc = _document(provider, accounts)
    if provider == "aws":  # the fields the AWS provider honours are not refused
        eks = doc["spec"]["provisioner"]["eks"]
        eks.update(amiFamily="Bottlerocket", privateCluster=True)
    response = await client.post("/v1/clusters", params={"dryRun": "true"}, json=doc, headers=org.headers())
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["valid"] is True
    assert any("catalog" in check for check in data["checks"]), data
    if provider == "aws":
        assert any(accounts["account"] in check for check in data["checks"]), data
    if provider == "gcp":
        assert any("proj-parity" in check for check in data["checks"]), data
    assert await _left_behind(pool, org, doc["spec"]["clusterName"]) == (0, 0)


async def test_many_problems_are_listed_at_once_the_first_in_the_message(
    client: httpx.AsyncClient, shared_org: Org, pool: asyncpg.Pool
) -> None:
    doc = gke_doc()
    spec = doc["spec"]
    spec["region"] = "nowhere-9"
    spec["provisioner"]["gke"]["kubernetesVersion"] = "1.20"
    spec["clusterSpec"]["dataPlane"]["nodeGroups"][1]["machineTypes"] = ["gigantic"]
    response = await client.post("/v1/clusters", params={"dryRun": "true"}, json=doc, headers=shared_org.headers())
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert fields[:3] == ["spec.region", "spec.provisioner.gke.kubernetesVersion", f"{GROUP1}.machineTypes[0]"]
    assert response.json()["message"].startswith("invalid deploy spec: spec.region:")
    assert await _left_behind(pool, shared_org, spec["clusterName"]) == (0, 0)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"provider": "aws"},
        {
            "provider": "gcp",
            "provisioner": {"type": "gke", "gke": {"kubernetesVersion": "latest", "releaseChannel": 7}},
        },
        {
            "provider": "azure",
            "provisioner": {"type": "aks", "aks": []},
            "clusterSpec": {"dataPlane": {"nodeGroups": [1]}},
        },
        {"provider": "aws", "region": 5, "provisioner": {"type": "eks", "eks": {"subnets": {"a": "b"}, "vpcId": "v"}}},
        {"provider": "local", "provisioner": {"type": "local"}, "clusterSpec": {"controlPlane": [], "dataPlane": None}},
    ],
)
def test_the_checks_answer_any_json_with_problems_never_an_exception(spec: dict[str, Any]) -> None:
    # VALIDATE may hand it a spec recorded by an older release: it must never raise.
    assert all(p.field.startswith("spec.") for p in check_deploy_spec(spec))
