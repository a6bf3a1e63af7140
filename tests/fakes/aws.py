"""AWS for tests: moto's in-process server, and botocore hooks where moto falls short.

Production code runs unchanged against moto's server (its endpoint comes from settings or
`AWS_ENDPOINT_URL`). moto's EKS has no add-ons, no `update_cluster_version`,
`update_nodegroup_version` or `describe_update`, applies `update_nodegroup_config` at once,
refuses almost nothing, and everything is ACTIVE at once. `EksGaps` fills those gaps with
botocore event hooks registered on the sessions the *test* builds (through the provider's
injected session factory):

- answers for the missing operations, and updates that run: InProgress for a few
  observations (the update's DescribeUpdate, or a describe of the cluster or group it
  changes, which then shows UPDATING), applied to moto's backend state when they succeed;
- CREATING before ACTIVE for the first few polls of a new cluster or node group;
- the refusals of real EKS, answered at the wire with its error codes: a control-plane
  downgrade, a skipped minor or a same-version UpdateClusterVersion (InvalidParameterException);
  a node-group version newer than the control plane or older than the group's, in
  UpdateNodegroupVersion and CreateNodegroup (InvalidParameterException); `minSize > maxSize`,
  `maxSize < 1` or a desired size outside the range, in CreateNodegroup and
  UpdateNodegroupConfig (InvalidParameterException); a second update while one runs, or a
  change of a group that is not ACTIVE (ResourceInUseException); CreateNodegroup with a name
  already taken (ResourceInUseException);
- `DescribeClusterVersions` (moto 5.2.5 lacks it), answered from `cluster_versions`, which a
  test edits to publish or retire a version (`publish_version`, `retire_version`);
- fault injection: `fail_creates` (a node group created under that name ends CREATE_FAILED),
  `fail_config_updates` (the next UpdateNodegroupConfig of that group ends Failed and changes
  nothing), `hold` (while set, node-group creates and updates stay in progress, so a test can
  cancel an operation during NODE_GROUPS), and `failures` (an operation answered with an error).

It is one module past 400 lines on purpose: the hooks share one state (updates in flight,
holds, injected faults) that a reader follows from one operation to the next.
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


def _error(code: str, message: str, status: int) -> tuple[AWSResponse, dict[str, Any]]:
    return _answer({"Error": {"Code": code, "Message": message}}, status)


def _not_found(message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return _error("ResourceNotFoundException", message, 404)


def _invalid(message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return _error("InvalidParameterException", message, 400)


def _in_use(message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return _error("ResourceInUseException", message, 409)


def _minor(version: str) -> tuple[int, int]:
    major, minor, *_ = (int(p) for p in version.split("."))
    return major, minor


def _bad_scaling(scaling: dict[str, Any]) -> str | None:
    """Why EKS would refuse this scaling config, or None."""
    low, high = int(scaling.get("minSize", 0)), int(scaling.get("maxSize", 1))
    desired = int(scaling.get("desiredSize", low))
    if low < 0 or high < 1:
        return f"Minimum size {low} must be >= 0 and maximum size {high} must be >= 1"
    if low > high:
        return f"Minimum capacity {low} can't be greater than maximum capacity {high}"
    if not low <= desired <= high:
        return f"Desired capacity {desired} must be between minimum {low} and maximum {high}"
    return None


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
    # Node-group names: the next group created under the name ends CREATE_FAILED.
    fail_creates: set[str] = field(default_factory=set)
    # Node-group names: the next UpdateNodegroupConfig of the group ends Failed, changing nothing.
    fail_config_updates: set[str] = field(default_factory=set)
    # While set, node-group creates and updates stay in progress (CREATING, UPDATING, InProgress).
    hold: bool = False
    # What DescribeClusterVersions answers: version -> its versionStatus; `default_version` is marked default.
    cluster_versions: dict[str, str] = field(
        default_factory=lambda: {v: "STANDARD_SUPPORT" for v in ("1.29", "1.30", "1.31", "1.32", "1.33")}
    )
    default_version: str = "1.32"
    # Node groups seen ACTIVE once (by ARN): a hold no longer turns them back to CREATING.
    _created: set[str] = field(default_factory=set)

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
            "UpdateNodegroupConfig": self._update_nodegroup_config,
            "CreateNodegroup": self._refuse_nodegroup,
            "DescribeUpdate": self._describe_update,
            "DescribeClusterVersions": self._describe_cluster_versions,
        }.items():
            events.register(f"before-call.eks.{operation}", handler)
        # An update advances when what it changes is looked at, before moto answers, so the answer
        # shows the update's outcome as soon as it has one.
        events.register("before-call.eks.DescribeCluster", self._observe_cluster)
        events.register("before-call.eks.DescribeNodegroup", self._observe_nodegroup)
        events.register("after-call.eks.CreateNodegroup", self._created_nodegroup)
        events.register("after-call.eks.DescribeCluster", self._cluster_state)
        events.register("after-call.eks.DescribeNodegroup", self._nodegroup_state)
        events.register("after-call.iam.GetRolePolicy", self._policy_as_json)

    # -- plumbing --

    @staticmethod
    def _stash_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["test_params"] = dict(params)

    def _count_and_fail(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        self.calls[model.name] += 1
        code = self.failures.get(model.name)
        if code:
            return _error(code, f"User is not authorized to perform {model.name}", 403)
        return None

    @staticmethod
    def _policy_as_json(parsed: dict[str, Any], **_: Any) -> None:
        """moto returns the Python repr of inline policies made by CloudFormation; AWS returns JSON."""
        document = parsed.get("PolicyDocument")
        if isinstance(document, str) and document.startswith("{'"):
            parsed["PolicyDocument"] = json.dumps(ast.literal_eval(document))

    # -- versions --

    def publish_version(self, version: str) -> None:
        self.cluster_versions[version] = "STANDARD_SUPPORT"

    def retire_version(self, version: str) -> None:
        """End of support: EKS lists the version as UNSUPPORTED (only with includeAll)."""
        self.cluster_versions[version] = "UNSUPPORTED"

    def _describe_cluster_versions(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        listed = [
            {
                "clusterVersion": version,
                "clusterType": "eks",
                "defaultPlatformVersion": "eks.1",
                "defaultVersion": version == self.default_version,
                "status": status,
                "versionStatus": status,
                "kubernetesPatchVersion": f"{version}.0",
            }
            for version, status in sorted(self.cluster_versions.items(), key=lambda kv: _minor(kv[0]))
            if status != "UNSUPPORTED" or p.get("includeAll")
        ]
        return _answer({"clusterVersions": listed})

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

    # -- node groups: refusals, CREATING before ACTIVE, CREATE_FAILED on request --

    def _refuse_nodegroup(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        cluster = find_cluster(p["clusterName"])
        if cluster is None:
            return None  # moto answers ResourceNotFoundException
        if p["nodegroupName"] in cluster.nodegroups:
            return _in_use(f"NodeGroup already exists with name {p['nodegroupName']} and cluster name {cluster.name}")
        problem = _bad_scaling(p.get("scalingConfig") or {})
        if problem:
            return _invalid(problem)
        version = p.get("version")
        if version and _minor(version) > _minor(cluster.version):
            return _invalid(
                f"Requested Nodegroup Version {version} is newer than the cluster version {cluster.version}"
            )
        return None

    def _created_nodegroup(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        p = context["test_params"]
        group = parsed.get("nodegroup")
        cluster = find_cluster(p["clusterName"])
        if not group or cluster is None:
            return
        backend = cluster.nodegroups[p["nodegroupName"]]
        if not p.get("version"):  # EKS starts a group at the control plane's version
            backend.version = group["version"] = cluster.version
        if p["nodegroupName"] in self.fail_creates:
            self.fail_creates.discard(p["nodegroupName"])
            backend.status = group["status"] = "CREATE_FAILED"
            backend.health = {
                "issues": [
                    {
                        "code": "AsgInstanceLaunchFailures",
                        "message": "Could not launch On-Demand Instances. InsufficientInstanceCapacity (injected)",
                        "resourceIds": [],
                    }
                ]
            }

    def _nodegroup_state(self, parsed: dict[str, Any], **_: Any) -> None:
        group = parsed.get("nodegroup")
        if not group or group.get("status") != "ACTIVE":
            return
        key = group["nodegroupArn"]  # a group created again under the same name starts CREATING again
        self.polls[key] += 1
        if key not in self._created and (self.polls[key] <= self.creating_polls or self.hold):
            group["status"] = "CREATING"
            return
        self._created.add(key)
        if self._running(group["clusterName"], group["nodegroupName"]) is not None:
            group["status"] = "UPDATING"

    def _cluster_state(self, parsed: dict[str, Any], **_: Any) -> None:
        cluster = parsed.get("cluster")
        if not cluster or cluster.get("status") != "ACTIVE":
            return
        key = f"cluster/{cluster['arn']}"
        self.polls[key] += 1
        if self.polls[key] <= self.creating_polls:
            cluster["status"] = "CREATING"
            return
        if self._running(cluster["name"], None) is not None:
            cluster["status"] = "UPDATING"

    def _observe_cluster(self, context: dict[str, Any], **_: Any) -> None:
        running = self._running(context["test_params"]["name"], None)
        if running is not None:
            self._advance(running)

    def _observe_nodegroup(self, context: dict[str, Any], **_: Any) -> None:
        p = context["test_params"]
        running = self._running(p["clusterName"], p["nodegroupName"])
        if running is not None:
            self._advance(running)

    # -- updates --

    def _running(self, cluster: str, nodegroup: str | None) -> dict[str, Any] | None:
        """The update in progress on the cluster's control plane (nodegroup None) or on a group."""
        for update in list(self.updates.values()):
            subject = update["subject"]
            if update["status"] == "InProgress" and subject == (cluster, nodegroup):
                return update
        return None

    def _new_update(
        self, token: str | None, kind: str, subject: tuple[str, str | None], apply: dict[str, Any]
    ) -> dict[str, Any]:
        update_id = str(uuid.uuid4())
        update = {
            "id": update_id,
            "status": "InProgress",
            "type": kind,
            "errors": [],
            "subject": subject,
            "apply": apply,
            "fail": False,
        }
        self.updates[update_id] = update
        if token:
            self.tokens[token] = update_id
        return update

    @staticmethod
    def _public(update: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in update.items() if k not in ("apply", "subject", "fail")}

    def _replayed(self, token: str | None) -> Any:
        """EKS answers a repeated client request token with the first update."""
        if token and token in self.tokens:
            return _answer({"update": self._public(self.updates[self.tokens[token]])})
        return None

    def _update_cluster_version(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        replay = self._replayed(p.get("clientRequestToken"))
        if replay is not None:
            return replay
        cluster = find_cluster(p["name"])
        if cluster is None:
            return _not_found(f"No cluster found for name: {p['name']}.")
        if self._running(p["name"], None) is not None:
            return _in_use(f"Cluster {p['name']} has an update in progress")
        (major, minor), (new_major, new_minor) = _minor(cluster.version), _minor(p["version"])
        if new_major != major or new_minor != minor + 1:
            return _invalid(f"Unsupported Kubernetes minor version update from {cluster.version} to {p['version']}")
        update = self._new_update(
            p.get("clientRequestToken"), "VersionUpdate", (p["name"], None), {"version": p["version"]}
        )
        return _answer({"update": self._public(update)})

    def _nodegroup_for_update(self, p: dict[str, Any]) -> tuple[Any, Any, Any]:
        """(cluster, group, refusal): the group an update names, or why EKS refuses to touch it."""
        cluster = find_cluster(p["clusterName"])
        if cluster is None or p["nodegroupName"] not in cluster.nodegroups:
            return None, None, _not_found(f"No node group found for name: {p['nodegroupName']}.")
        group = cluster.nodegroups[p["nodegroupName"]]
        if self._running(p["clusterName"], p["nodegroupName"]) is not None:
            return None, None, _in_use(f"Nodegroup {p['nodegroupName']} has an update in progress")
        if group.status != "ACTIVE" or group.arn not in self._created:
            status = group.status if group.status != "ACTIVE" else "CREATING"
            return None, None, _in_use(f"Nodegroup {p['nodegroupName']} is in {status} state")
        return cluster, group, None

    def _update_nodegroup_version(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        replay = self._replayed(p.get("clientRequestToken"))
        if replay is not None:
            return replay
        cluster, group, refusal = self._nodegroup_for_update(p)
        if refusal is not None:
            return refusal
        version = p.get("version") or cluster.version
        if _minor(version) > _minor(cluster.version):
            return _invalid(
                f"Requested Nodegroup Version {version} is newer than the cluster version {cluster.version}"
            )
        if _minor(version) < _minor(group.version):
            return _invalid(f"Requested Nodegroup Version {version} is older than the nodegroup's {group.version}")
        subject = (p["clusterName"], p["nodegroupName"])
        update = self._new_update(p.get("clientRequestToken"), "VersionUpdate", subject, {"version": version})
        return _answer({"update": self._public(update)})

    def _update_nodegroup_config(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        replay = self._replayed(p.get("clientRequestToken"))
        if replay is not None:
            return replay
        _, group, refusal = self._nodegroup_for_update(p)
        if refusal is not None:
            return refusal
        scaling = dict(group.scaling_config) | dict(p.get("scalingConfig") or {})
        problem = _bad_scaling(scaling)
        if problem:
            return _invalid(problem)
        subject = (p["clusterName"], p["nodegroupName"])
        update = self._new_update(p.get("clientRequestToken"), "ConfigUpdate", subject, {"scaling": scaling})
        if p["nodegroupName"] in self.fail_config_updates:
            self.fail_config_updates.discard(p["nodegroupName"])
            update["fail"] = True
        return _answer({"update": self._public(update)})

    def _advance(self, update: dict[str, Any]) -> None:
        """One observation of an update in progress: after `update_polls` it ends, unless held."""
        cluster_name, nodegroup = update["subject"]
        self.polls[f"update/{update['id']}"] += 1
        if update["status"] != "InProgress" or self.polls[f"update/{update['id']}"] <= self.update_polls:
            return
        if nodegroup is not None and self.hold:
            return
        cluster = find_cluster(cluster_name)
        if update["fail"]:
            update["status"] = "Failed"
            update["errors"] = [
                {
                    "errorCode": "NodeCreationFailure",
                    "errorMessage": "Instances failed to join the kubernetes cluster (injected)",
                    "resourceIds": [nodegroup],
                }
            ]
            return
        if cluster is not None:
            if nodegroup is None:
                cluster.version = update["apply"]["version"]
            elif nodegroup in cluster.nodegroups:
                group = cluster.nodegroups[nodegroup]
                if "version" in update["apply"]:
                    group.version = update["apply"]["version"]
                if "scaling" in update["apply"]:
                    group.scaling_config = dict(update["apply"]["scaling"])
        update["status"] = "Successful"

    def _describe_update(self, context: dict[str, Any], **_: Any) -> Any:
        p = context["test_params"]
        update = self.updates.get(p["updateId"])
        if update is None:
            return _not_found(f"No update found for id: {p['updateId']}.")
        self._advance(update)
        return _answer({"update": self._public(update)})
