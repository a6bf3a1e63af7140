"""AWS for tests: moto's in-process server, and botocore hooks where moto falls short.

Production code runs unchanged against moto's server (its endpoint comes from settings or
`AWS_ENDPOINT_URL`). moto's EKS has no add-ons, no `update_cluster_version`,
`update_nodegroup_version` or `describe_update`, and everything is ACTIVE at once. `EksGaps`
fills those gaps with botocore event hooks registered on the sessions the *test* builds
(through the provider's injected session factory): answers for the missing operations, and
CREATING / InProgress states for the first few polls, so the waiting code runs. Version changes
are applied to moto's backend state when an update succeeds.
"""

from __future__ import annotations

import ast
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from moto import settings as moto_settings
from moto.eks.models import eks_backends
from moto.server import ThreadedMotoServer

from clusterflow.activities.providers.aws import AwsCredentials, SessionFactory, default_session_factory, new_session

PLATFORM_ACCOUNT = "123456789012"  # moto's account for unknown (platform) access keys
TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class MotoAws:
    def __init__(self) -> None:
        # Real accounts have AWS's managed policies (AmazonEKSClusterPolicy...); moto loads them on request.
        moto_settings.default_user_config.setdefault("iam", {})["load_aws_managed_policies"] = True
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.stop()

    def platform_session(self, region: str = "us-east-1") -> boto3.Session:
        return boto3.Session(region_name=region, **TEST_CREDENTIALS)

    def client(self, service: str, session: boto3.Session | None = None) -> Any:
        return (session or self.platform_session()).client(service, endpoint_url=self.url)

    def customer_session(self, account_id: str, region: str = "us-east-1") -> boto3.Session:
        """A session acting inside `account_id` (moto maps assumed-role keys to the role's account)."""
        sts = self.client("sts")
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/admin", RoleSessionName="customer")
        c = creds["Credentials"]
        return boto3.Session(
            aws_access_key_id=c["AccessKeyId"],
            aws_secret_access_key=c["SecretAccessKey"],
            aws_session_token=c["SessionToken"],
            region_name=region,
        )


def new_account_id() -> str:
    return str(random.randint(200000000000, 999999999999))


def find_cluster(name: str) -> Any:
    """moto's backend object of the EKS cluster `name`, whichever account and region hold it."""
    for regions in eks_backends.values():
        for backend in regions.values():
            if name in backend.clusters:
                return backend.clusters[name]
    return None


def _answer(parsed: dict[str, Any], status: int = 200) -> tuple[AWSResponse, dict[str, Any]]:
    parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status})
    return AWSResponse("https://eks.fake", status, HTTPHeaders(), None), parsed


def _not_found(message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return _answer({"Error": {"Code": "ResourceNotFoundException", "Message": message}}, 404)


@dataclass
class EksGaps:
    """Test-side EKS behaviour moto lacks; install on sessions with `session_factory()`."""

    creating_polls: int = 2
    update_polls: int = 2
    addons: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    polls: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    # Operation -> error code: the next calls of that operation fail with it (as AWS would).
    failures: dict[str, str] = field(default_factory=dict)

    def session_factory(self) -> SessionFactory:
        def factory(credentials: AwsCredentials | None, region: str) -> boto3.Session:
            if credentials is None:
                session = new_session(region, **TEST_CREDENTIALS)
            else:
                session = default_session_factory(credentials, region)
            self.install(session)
            return session

        return factory

    def install(self, session: boto3.Session) -> None:
        events = session.events
        events.register("before-parameter-build.*.*", self._stash_params)
        events.register("before-call.*.*", self._count_and_fail)
        for operation, handler in {
            "CreateAddon": self._create_addon,
            "DescribeAddon": self._describe_addon,
            "ListAddons": self._list_addons,
            "DeleteAddon": self._delete_addon,
            "UpdateClusterVersion": self._update_cluster_version,
            "UpdateNodegroupVersion": self._update_nodegroup_version,
            "DescribeUpdate": self._describe_update,
        }.items():
            events.register(f"before-call.eks.{operation}", handler)
        events.register("after-call.eks.DescribeCluster", self._creating_cluster)
        events.register("after-call.eks.DescribeNodegroup", self._creating_nodegroup)
        events.register("after-call.eks.UpdateNodegroupConfig", self._track_config_update)
        events.register("after-call.iam.GetRolePolicy", self._policy_as_json)

    # -- plumbing --

    @staticmethod
    def _stash_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["test_params"] = dict(params)

    def _count_and_fail(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        self.calls[model.name] += 1
        code = self.failures.get(model.name)
        if code:
            return _answer({"Error": {"Code": code, "Message": f"User is not authorized to perform {model.name}"}}, 403)
        return None

    @staticmethod
    def _policy_as_json(parsed: dict[str, Any], **_: Any) -> None:
        """moto returns the Python repr of inline policies made by CloudFormation; AWS returns JSON."""
        document = parsed.get("PolicyDocument")
        if isinstance(document, str) and document.startswith("{'"):
            parsed["PolicyDocument"] = json.dumps(ast.literal_eval(document))

    # -- add-ons --

    def _create_addon(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        if find_cluster(p["clusterName"]) is None:
            return _not_found(f"No cluster found for name: {p['clusterName']}.")
        addon = {
            "addonName": p["addonName"],
            "clusterName": p["clusterName"],
            "status": "CREATING",
            "addonVersion": "v1",
        }
        self.addons.setdefault(p["clusterName"], {})[p["addonName"]] = addon
        return _answer({"addon": dict(addon)})

    def _describe_addon(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        addon = self.addons.get(p["clusterName"], {}).get(p["addonName"])
        if addon is None:
            return _not_found(f"No addon: {p['addonName']} found in cluster: {p['clusterName']}")
        key = f"addon/{p['clusterName']}/{p['addonName']}"
        self.polls[key] += 1
        if addon["status"] == "DELETING":
            del self.addons[p["clusterName"]][p["addonName"]]
        elif addon["status"] == "CREATING" and self.polls[key] > self.creating_polls:
            addon["status"] = "ACTIVE"
        return _answer({"addon": dict(addon)})

    def _list_addons(self, context: dict[str, Any], **_: Any) -> Any:
        name = context["test_params"]["clusterName"]
        return _answer({"addons": sorted(self.addons.get(name, {}))})

    def _delete_addon(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        addon = self.addons.get(p["clusterName"], {}).get(p["addonName"])
        if addon is None:
            return _not_found(f"No addon: {p['addonName']}")
        addon["status"] = "DELETING"
        return _answer({"addon": dict(addon)})

    # -- CREATING before ACTIVE --

    def _creating_cluster(self, parsed: dict[str, Any], **_: Any) -> None:
        cluster = parsed.get("cluster")
        if cluster and cluster.get("status") == "ACTIVE":
            key = f"cluster/{cluster['name']}"
            self.polls[key] += 1
            if self.polls[key] <= self.creating_polls:
                cluster["status"] = "CREATING"

    def _creating_nodegroup(self, parsed: dict[str, Any], **_: Any) -> None:
        group = parsed.get("nodegroup")
        if group and group.get("status") == "ACTIVE":
            key = f"nodegroup/{group['clusterName']}/{group['nodegroupName']}"
            self.polls[key] += 1
            if self.polls[key] <= self.creating_polls:
                group["status"] = "CREATING"

    # -- updates --

    def _new_update(self, token: str | None, kind: str, apply: dict[str, Any]) -> dict[str, Any]:
        if token and token in self.tokens:  # EKS answers a repeated token with the first update
            return self.updates[self.tokens[token]]
        update_id = str(uuid.uuid4())
        self.updates[update_id] = {"id": update_id, "status": "InProgress", "type": kind, "errors": [], "apply": apply}
        if token:
            self.tokens[token] = update_id
        return self.updates[update_id]

    @staticmethod
    def _public(update: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in update.items() if k != "apply"}

    def _update_cluster_version(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        if find_cluster(p["name"]) is None:
            return _not_found(f"No cluster found for name: {p['name']}.")
        update = self._new_update(
            p.get("clientRequestToken"), "VersionUpdate", {"cluster": p["name"], "version": p["version"]}
        )
        return _answer({"update": self._public(update)})

    def _update_nodegroup_version(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        cluster = find_cluster(p["clusterName"])
        if cluster is None or p["nodegroupName"] not in cluster.nodegroups:
            return _not_found(f"No node group found for name: {p['nodegroupName']}.")
        version = p.get("version") or cluster.version
        apply = {"cluster": p["clusterName"], "nodegroup": p["nodegroupName"], "version": version}
        update = self._new_update(p.get("clientRequestToken"), "VersionUpdate", apply)
        return _answer({"update": self._public(update)})

    def _track_config_update(self, parsed: dict[str, Any], **_: Any) -> None:
        update = parsed.get("update")
        if update and update["id"] not in self.updates:
            self.updates[update["id"]] = {
                "id": update["id"],
                "status": "InProgress",
                "type": "ConfigUpdate",
                "errors": [],
                "apply": {},
            }

    def _describe_update(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        update = self.updates.get(p["updateId"])
        if update is None:
            return _not_found(f"No update found for id: {p['updateId']}.")
        self.polls[f"update/{update['id']}"] += 1
        if update["status"] == "InProgress" and self.polls[f"update/{update['id']}"] > self.update_polls:
            apply = update["apply"]
            if apply:
                cluster = find_cluster(apply["cluster"])
                if "nodegroup" in apply:
                    cluster.nodegroups[apply["nodegroup"]].version = apply["version"]
                else:
                    cluster.version = apply["version"]
            update["status"] = "Successful"
        return _answer({"update": self._public(update)})
