"""The `aws` provider against moto: connecting an account, a deploy, temporary credentials,
re-verification, and failures.

Everything but re-verification goes through the API with a real worker. The cluster's whole
lifecycle (deploy, update, rollback, cancel, delete) is proven through the API in
`test_eks_journey.py`. moto's gaps (EKS states, add-ons, version updates) are filled by
`tests.fakes.aws.EksGaps` hooks on the sessions the test's session factory builds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import urllib.parse

import asyncpg
import boto3
import httpx
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from clusterflow.activities.providers.aws import AwsClients, AwsCloudConnect
from clusterflow.api.app import create_app
from clusterflow.contracts.cloud_accounts import CloudConnectInput, ReverifyInput
from clusterflow.ids import operation_id as new_operation_id
from clusterflow.records import cloud_accounts, notifications, operations
from clusterflow.settings import Settings
from clusterflow.worker.main import build_worker
from clusterflow.worker.schedules import ensure_schedules, reverify_schedule_id
from tests.aws_support import REGION, aws_document, aws_settings, aws_worker, connect, create_stack, gaps, settings
from tests.conftest import Org, Services, test_settings
from tests.fakes.aws import TEST_CREDENTIALS, EksGaps, MotoAws, find_cluster, new_account_id
from tests.helpers import all_events, wait_for_operation

# Re-exported helpers, and the fixtures this module uses by name.
__all__ = ["REGION", "aws_document", "aws_settings", "aws_worker", "connect", "create_stack", "gaps", "settings"]


async def test_connect_then_deploy_then_credentials_then_reverify(
    api: httpx.AsyncClient,
    aws_worker: None,
    org: Org,
    moto_aws: MotoAws,
    gaps: EksGaps,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    account_id = new_account_id()

    # -- connect --
    accepted = await connect(api, org, moto_aws, account_id)
    url = accepted["preSignedTargetCFTemplateURL"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # SigV4, not the retiring SigV2
    assert query["X-Amz-Credential"][0].endswith(f"/{REGION}/s3/aws4_request")
    assert "Signature" not in query and "AWSAccessKeyId" not in query
    template = json.loads(httpx.get(url).text)
    role = template["Resources"]["ClusterflowRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"]["AWS"] == "arn:aws:iam::123456789012:root"
    external_id = trust["Condition"]["StringEquals"]["sts:ExternalId"]
    assert external_id == await cloud_accounts.external_id(pool, org.id, "aws")
    assert role["Policies"][0]["PolicyName"] == "clusterflow-manage"
    # The answer said what the template grants, before the customer created anything: the same
    # statements, with this account's ARNs.
    shown = {p["name"]: p for p in accepted["permissions"]}
    granted = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert list(shown) == [s["Sid"] for s in granted]
    assert shown["PassRolesToEks"]["resources"] == [f"arn:aws:iam::{account_id}:role/clusterflow-*"]
    assert shown["PassRolesToEks"]["conditions"] == [
        "StringEquals iam:PassedToService = eks.amazonaws.com, ec2.amazonaws.com"
    ]
    assert all(p["why"] for p in shown.values())

    connection = (await api.get(f"/v1/cloud-accounts/aws/{accepted['id']}", headers=org.headers())).json()["data"]
    assert connection["status"] == "CONNECTED"
    assert connection["error"] is None
    assert connection["roleArn"] == f"arn:aws:iam::{account_id}:role/{cloud_accounts.aws_role_name(org.id)}"
    messages = [step["message"] for step in connection["steps"]]
    assert any("cannot be assumed yet" in m or "does not exist yet" in m for m in messages), messages
    assert any("assumed and verified for level manage" in m for m in messages), messages
    again = {"clusterName": "prod", "destinationAccountId": account_id}
    refused = await api.post("/v1/cloud-accounts/aws", json=again, headers=org.headers())
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "ACCOUNT_ALREADY_CONNECTED"
    # A forced reconnect keeps the account usable while it re-verifies the (unchanged) role.
    again["forceUpdate"] = True
    reconnect = (await api.post("/v1/cloud-accounts/aws", json=again, headers=org.headers())).json()["data"]
    assert await cloud_accounts.find_usable(pool, org.id, "aws", account_id) is not None
    record = await wait_for_operation(api, org.headers(), reconnect["id"], timeout=60)
    assert record["status"] == "SUCCEEDED", record
    first = (await api.get(f"/v1/cloud-accounts/aws/{accepted['id']}", headers=org.headers())).json()["data"]
    assert first["status"] == "CONNECTED"
    assert first["preSignedTargetCFTemplateURL"] is None  # superseded by the reconnect's template

    # -- deploy --
    response = await api.post("/v1/clusters", json=aws_document("eks-1", account_id), headers=org.headers())
    assert response.status_code == 202, response.text
    deployed = response.json()["data"]
    record = await wait_for_operation(api, org.headers(), deployed["operationId"], timeout=90)
    assert record["status"] == "SUCCEEDED", record
    events = await all_events(api, org.headers(), deployed["operationId"])
    messages = [e["message"] for e in events]
    assert "cluster eks-1 is CREATING" in messages  # the wait for ACTIVE ran
    assert "node group workers is CREATING" in messages
    assert "add-on coredns is CREATING" in messages

    cluster = find_cluster("eks-1")
    assert cluster is not None
    assert cluster.status == "ACTIVE"
    assert cluster.version == "1.31"
    assert cluster.tags["clusterflow:cluster-id"] == deployed["clusterId"]
    assert cluster.tags["team"] == "platform"
    assert set(cluster.nodegroups) == {"workers", "batch"}
    assert cluster.nodegroups["batch"].capacity_type == "SPOT"
    assert cluster.nodegroups["workers"].instance_types == ["m5.large"]
    assert cluster.nodegroups["batch"].instance_types == ["m5.xlarge"]
    assert {a: v["status"] for a, v in gaps.addons["eks-1"].items()} == dict.fromkeys(
        ["vpc-cni", "coredns", "kube-proxy"], "ACTIVE"
    )
    assert gaps.calls["CreateCluster"] == 1
    view = (await api.get(f"/v1/clusters/{deployed['clusterId']}", headers=org.headers())).json()["data"]
    assert view["state"] == "ACTIVE"
    assert view["kubernetesVersion"] == "1.31"

    # -- temporary credentials --
    response = await api.post(
        "/v1/cloud-credentials/aws",
        json={"clusterName": "eks-1", "duration": "8h"},
        headers=org.headers(),
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    credentials = response.json()["data"]
    caller = boto3.Session(
        aws_access_key_id=credentials["accessKeyId"],
        aws_secret_access_key=credentials["secretAccessKey"],
        aws_session_token=credentials["sessionToken"],
        region_name=REGION,
    ).client("sts", endpoint_url=moto_aws.url)
    assert caller.get_caller_identity()["Account"] == account_id
    stored = await pool.fetchval(
        """SELECT count(*) FROM operation_events e JOIN operations o ON o.id = e.operation_id
            WHERE o.organization_id = $1
              AND (e.message LIKE '%' || $2 || '%' OR o.result::text LIKE '%' || $2 || '%')""",
        org.id,
        credentials["secretAccessKey"],
    )
    assert stored == 0

    # -- re-verification: a broken trust degrades the account --
    connector = AwsCloudConnect(
        pool,
        AwsClients(gaps.session_factory(), moto_aws.url, REGION),
        bucket=settings.aws_connect_bucket,
        url_seconds=60,
        credentials_max_seconds=3600,
    )
    await notifications.save_subscription(pool, org.id, "cloud_account.disconnected", ["webhook"], True)
    customer = moto_aws.customer_session(account_id)
    moto_aws.client("cloudformation", customer).delete_stack(StackName="clusterflow-connect")
    result = await ActivityEnvironment().run(connector.reverify_accounts, ReverifyInput())
    row = await cloud_accounts.find_usable(pool, org.id, "aws", account_id)
    assert row is not None
    assert row.status == "DEGRADED"
    assert row.id in result.degraded
    # The transition is announced once (a second round that finds it still broken is not).
    await ActivityEnvironment().run(connector.reverify_accounts, ReverifyInput())
    announced = await pool.fetch(
        "SELECT subject, data FROM notification_outbox WHERE organization_id = $1 AND topic = $2",
        org.id,
        "cloud_account.disconnected",
    )
    assert [(a["subject"], a["data"]["status"], a["data"]["previousStatus"]) for a in announced] == [
        (row.id, "DEGRADED", "CONNECTED")
    ]
    assert announced[0]["data"]["accountId"] == account_id


async def test_access_denied_is_permanent_and_names_the_remedy(
    api: httpx.AsyncClient, aws_worker: None, org: Org, moto_aws: MotoAws, gaps: EksGaps
) -> None:
    account_id = new_account_id()
    await connect(api, org, moto_aws, account_id)
    gaps.failures["CreateCluster"] = "AccessDeniedException"
    response = await api.post("/v1/clusters", json=aws_document("denied-1", account_id), headers=org.headers())
    operation_id = response.json()["data"]["operationId"]
    record = await wait_for_operation(api, org.headers(), operation_id, timeout=60)
    assert record["status"] == "FAILED"
    assert record["currentPhase"] == "CONTROL_PLANE"
    assert record["error"]["code"] == "CLOUD_ACCESS_DENIED"
    assert record["error"]["retryable"] is False
    assert "Remedy:" in record["error"]["message"]
    assert "forceUpdate=true" in record["error"]["message"]
    assert gaps.calls["CreateCluster"] == 1  # permanent: not retried
    events = await all_events(api, org.headers(), operation_id)
    assert not [e for e in events if e["message"].startswith("retrying CONTROL_PLANE")]
    assert find_cluster("denied-1") is None


async def test_deploy_without_a_connected_account_is_refused_with_a_remedy(api: httpx.AsyncClient, org: Org) -> None:
    # Refused by the API before anything is enqueued (the provider's VALIDATE would refuse it too).
    response = await api.post("/v1/clusters", json=aws_document("lonely-1", new_account_id()), headers=org.headers())
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_SPEC"
    assert error["details"][0]["field"] == "spec.provisioner.eks.accountId"
    assert error["details"][0]["type"] == "cloud_account_not_connected"
    assert "POST /v1/cloud-accounts/aws" in error["details"][0]["message"]


async def test_cloud_account_requests_are_validated(api: httpx.AsyncClient, org: Org, services: Services) -> None:
    missing = await api.post("/v1/cloud-accounts/aws", json={"clusterName": "x"}, headers=org.headers())
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0]["field"] == "destinationAccountId"
    bad = await api.post(
        "/v1/cloud-accounts/aws",
        json={"clusterName": "x", "destinationAccountId": "12", "level": "admin"},
        headers=org.headers(),
    )
    assert bad.status_code == 422
    assert {d["field"] for d in bad.json()["error"]["details"]} == {"destinationAccountId", "level"}
    unknown = await api.get("/v1/cloud-accounts/aws/op_unknown", headers=org.headers())
    assert unknown.status_code == 404
    no_account = await api.post(
        "/v1/cloud-credentials/aws",
        json={"clusterName": "x", "destinationAccountId": "123412341234"},
        headers=org.headers(),
    )
    assert no_account.status_code == 409
    assert no_account.json()["error"]["code"] == "CLOUD_ACCOUNT_NOT_CONNECTED"

    local_only = create_app(test_settings(services))
    async with local_only.router.lifespan_context(local_only):
        transport = httpx.ASGITransport(app=local_only)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            refused = await client.post(
                "/v1/cloud-accounts/aws",
                json={"clusterName": "x", "destinationAccountId": "123412341234"},
                headers=org.headers(),
            )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "PROVIDER_NOT_ENABLED"


async def test_a_misconfigured_role_is_reported_and_the_connect_times_out(
    services: Services, moto_aws: MotoAws, org: Org, pool: asyncpg.Pool, temporal_client: Client, gaps: EksGaps
) -> None:
    settings = aws_settings(services, moto_aws, aws_connect_wait_seconds=3.0)
    account_id = new_account_id()
    customer = moto_aws.customer_session(account_id)
    moto_aws.client("iam", customer).list_roles()  # moto sets a new account up on first use: do it now
    app = create_app(settings)
    async with (
        build_worker(temporal_client, pool, settings, aws_sessions=gaps.session_factory()),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            body = {"clusterName": "prod", "destinationAccountId": account_id, "level": "manage"}
            accepted = (await api.post("/v1/cloud-accounts/aws", json=body, headers=org.headers())).json()["data"]
            # The customer edits the template: the ExternalId condition is gone.
            template = json.loads(httpx.get(accepted["preSignedTargetCFTemplateURL"]).text)
            del template["Resources"]["ClusterflowRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0][
                "Condition"
            ]
            cfn = moto_aws.client("cloudformation", moto_aws.customer_session(account_id))
            cfn.create_stack(
                StackName="edited", TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_NAMED_IAM"]
            )
            record = await wait_for_operation(api, org.headers(), accepted["id"], timeout=60)
            status = (await api.get(f"/v1/cloud-accounts/aws/{accepted['id']}", headers=org.headers())).json()["data"]

    assert record["status"] == "FAILED"
    assert record["error"]["code"] == "CLOUD_CONNECT_TIMED_OUT"
    assert status["status"] == "FAILED"
    assert "ExternalId" in status["error"]["message"]
    misconfigured = [s for s in status["steps"] if s["labels"].get("state") == "MISCONFIGURED"]
    assert misconfigured
    assert misconfigured[0]["level"] == "WARN"
    assert await cloud_accounts.find_usable(pool, org.id, "aws", account_id) is None


async def test_the_reverify_schedule_is_ensured_once_per_task_queue(
    temporal_client: Client, services: Services, moto_aws: MotoAws
) -> None:
    settings = aws_settings(services, moto_aws, aws_reverify_interval_seconds=120)
    await ensure_schedules(temporal_client, settings)
    await ensure_schedules(temporal_client, settings.model_copy(update={"aws_reverify_interval_seconds": 300}))
    handle = temporal_client.get_schedule_handle(reverify_schedule_id(settings))
    described = await handle.describe()
    assert [i.every.total_seconds() for i in described.schedule.spec.intervals] == [300]
    assert described.schedule.action.workflow == "AwsReverifyAccounts"  # type: ignore[attr-defined]
    await handle.delete()


async def test_a_long_wait_continues_as_new_and_still_connects(
    aws_worker: None,
    api: httpx.AsyncClient,
    org: Org,
    moto_aws: MotoAws,
    pool: asyncpg.Pool,
    temporal_client: Client,
    settings: Settings,
) -> None:
    account_id = new_account_id()
    operation_id = new_operation_id()
    async with pool.acquire() as conn, conn.transaction():
        await cloud_accounts.external_id(conn, org.id, "aws")
        row_id = await cloud_accounts.upsert_for_connect(
            conn,
            organization_id=org.id,
            provider="aws",
            account_id=account_id,
            cluster_name="prod",
            level="read",
            region=REGION,
            role_name=cloud_accounts.aws_role_name(org.id),
            role_arn=f"arn:aws:iam::{account_id}:role/{cloud_accounts.aws_role_name(org.id)}",
            session_seconds=3600,
            operation_id=operation_id,
        )
        await operations.insert(
            conn,
            operation_id=operation_id,
            organization_id=org.id,
            cluster_id=None,
            cluster_name="prod",
            operation_type="CLOUD_CONNECT",
            requested_by=None,
            idempotency_key=None,
            workflow_type="CloudConnect",
            workflow_input={},
            metadata={"cloudAccountId": row_id, "accountId": account_id, "level": "read"},
        )
    inp = CloudConnectInput(operation_id, org.id, row_id, account_id, "read", 60, 0.1, 0.1, checks_per_run=2)
    handle = await temporal_client.start_workflow("CloudConnect", inp, id=operation_id, task_queue=settings.task_queue)
    for _ in range(400):
        view = (await api.get(f"/v1/cloud-accounts/aws/{operation_id}", headers=org.headers())).json()["data"]
        if sum(step["message"].startswith("check ") for step in view["steps"]) >= 3:
            break
        await asyncio.sleep(0.05)
    create_stack(moto_aws, account_id, view["preSignedTargetCFTemplateURL"])
    record = await wait_for_operation(api, org.headers(), operation_id, timeout=60)
    assert record["status"] == "SUCCEEDED", record
    described = await handle.describe()
    assert described.run_id != handle.first_execution_run_id  # it continued as new at least once
    assert record["result"]["checks"] > 3
    view = (await api.get(f"/v1/cloud-accounts/aws/{operation_id}", headers=org.headers())).json()["data"]
    assert view["status"] == "CONNECTED"
    assert view["level"] == "read"


async def test_the_template_url_is_signed_with_sigv4_in_the_configured_region(
    services: Services, moto_aws: MotoAws, org: Org, pool: asyncpg.Pool, temporal_client: Client, gaps: EksGaps
) -> None:
    settings = aws_settings(services, moto_aws, aws_region="eu-west-1")
    app = create_app(settings)
    async with (
        build_worker(temporal_client, pool, settings, aws_sessions=gaps.session_factory()),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            body = {"clusterName": "prod", "destinationAccountId": new_account_id(), "level": "read"}
            accepted = (await api.post("/v1/cloud-accounts/aws", json=body, headers=org.headers())).json()["data"]
    url = accepted["preSignedTargetCFTemplateURL"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].endswith("/eu-west-1/s3/aws4_request")
    assert int(query["X-Amz-Expires"][0]) == settings.aws_connect_url_seconds
    fetched = httpx.get(url)  # moto checks the signature as S3 would
    assert fetched.status_code == 200, fetched.text
    assert json.loads(fetched.text)["Resources"]["ClusterflowRole"]["Properties"]["Policies"][0]["PolicyName"] == (
        "clusterflow-read"
    )
    # moto does not check presigned signatures: check it as S3 would, from the SigV4 spec.
    assert sigv4_signature(url, TEST_CREDENTIALS["aws_secret_access_key"]) == query["X-Amz-Signature"][0]
    tampered = url.replace("X-Amz-Expires=", "X-Amz-Expires=1")
    assert sigv4_signature(tampered, TEST_CREDENTIALS["aws_secret_access_key"]) != query["X-Amz-Signature"][0]


def sigv4_signature(url: str, secret: str) -> str:
    """The signature S3 expects for a presigned GET (AWS Signature Version 4, query string)."""
    parts = urllib.parse.urlsplit(url)
    params = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "X-Amz-Signature"]
    query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(params)
    )
    canonical = f"GET\n{parts.path}\n{query}\nhost:{parts.netloc}\n\nhost\nUNSIGNED-PAYLOAD"
    values = dict(params)
    scope = values["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", values["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
