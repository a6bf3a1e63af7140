"""A fake Azure Resource Manager (AKS) and Entra ID token endpoint, over TLS.

Wire-faithful for what `azure-mgmt-containerservice` and `azure-identity` do:

- `managedClusters` and their `agentPools`: PUT answers 201 (new) or 200 (update) with
  `provisioningState` Creating/Updating and an `Azure-AsyncOperation` header (plus `Retry-After`);
  the async-operation resource moves InProgress -> Succeeded (or Failed with an ARM error) over
  time, and the change is applied when it succeeds. DELETE answers 202 with `Azure-AsyncOperation`
  and `Location`, and 204 for what does not exist. A resource with an operation in flight refuses
  another with 409 `OperationNotAllowed`, as AKS does. Also `upgradeProfiles/default`,
  `listClusterUserCredential` and `listClusterAdminCredential`.
- The catalog reads: `locations/{l}/kubernetesVersions` answers from `aks_versions` (minor ->
  preview?) and `default_version`, and `Microsoft.Compute/skus?$filter=location eq '{l}'` from
  `vm_skus` (name -> (vCPUs, memory GiB, architecture)) in zones 1 to 3; a test publishes or
  retires a version or a size by editing them.
- Refusals, with ARM's status codes and error shapes: a control-plane downgrade or a skipped minor
  (400 `OperationNotAllowed`, "Downgrading/Upgrading Kubernetes version ... is not allowed.
  Available upgrades: ..."), an agent pool newer than its control plane (400
  `NodePoolMcVersionIncompatible`) or downgraded (400 `OperationNotAllowed`), `minCount >
  maxCount` or a count outside them (400 `InvalidParameter`), an invalid pool name (400
  `InvalidParameter`), a changed `vmSize` (400 `PropertyChangeNotAllowed`), a conditional create
  (`If-None-Match: *`) of a pool name already taken (412 `PreconditionFailed`), deleting the
  last System pool (400 `OperationNotAllowed`), local accounts disabled without Entra ID (400
  `BadRequest`), and an admin credential of a cluster without local accounts (400 `BadRequest`).
- Fault injection: `fail_next` (a request answered with an error), `fail_operation` /
  `fail_next_pool_operation` (an async operation that ends `Failed`; a failed create leaves the
  resource `Failed`, as AKS does), `hold_operations` / `release_operations` (operations that
  stay `InProgress` until released, to cancel or kill something mid-operation).
- Entra ID: `/{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/oauth2/v2.0/token`
  (client credentials with a secret, or a federated client assertion), so the real
  `ClientSecretCredential` / `ClientAssertionCredential` run against it.

Every ARM call needs the bearer token the token endpoint issued. Served over TLS with a
`trustme` CA because azure-core refuses to send bearer tokens over plain HTTP; production code
takes the CA bundle from settings. Errors use ARM's `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

_PREFIX = (
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ContainerService/managedClusters/([^/]+)"
)
_CLUSTER = re.compile(_PREFIX + r"$", re.IGNORECASE)
_POOLS = re.compile(_PREFIX + r"/agentPools$", re.IGNORECASE)
_POOL = re.compile(_PREFIX + r"/agentPools/([^/]+)$", re.IGNORECASE)
_UPGRADE_PROFILE = re.compile(_PREFIX + r"/upgradeProfiles/default$", re.IGNORECASE)
_USER_CREDENTIAL = re.compile(_PREFIX + r"/listClusterUserCredential$", re.IGNORECASE)
_ADMIN_CREDENTIAL = re.compile(_PREFIX + r"/listClusterAdminCredential$", re.IGNORECASE)
_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# Properties ARM computes: a PUT that sends them back (a GET's body, modified) does not set them.
_READ_ONLY = ("provisioningState", "currentOrchestratorVersion", "currentKubernetesVersion", "powerState", "fqdn")
_ASYNC_OP = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.ContainerService/locations/[^/]+/operations/([^/]+)$"
)
_DELETE_RESULT = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.ContainerService/locations/[^/]+/operationresults/([^/]+)$"
)
_OPENID = re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$")
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
_AKS_VERSIONS = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.ContainerService/locations/([^/]+)/kubernetesVersions$",
    re.IGNORECASE,
)
_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)$", re.IGNORECASE)
_SKUS = re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.Compute/skus$", re.IGNORECASE)

AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"  # the AKS API server's Entra ID application
FAKE_CA_DATA = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nZmFrZSBBS1MgY2x1c3RlciBDQQ==\n-----END CERTIFICATE-----\n"
).decode()
PATCHES = {"1.30": "1.30.14", "1.31": "1.31.10", "1.32": "1.32.6", "1.33": "1.33.2"}
UPGRADES = {"1.30": ["1.31"], "1.31": ["1.32"], "1.32": ["1.33"], "1.33": []}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _full(version: str | None) -> str:
    version = version or "1.32"
    return PATCHES.get(version, version) if version.count(".") == 1 else version


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _key(version: str) -> tuple[int, int]:
    major, minor = _minor(version).split(".")
    return int(major), int(minor)


def _writable(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k not in _READ_ONLY}


Key = tuple[str, str, str]


@dataclass
class AsyncOp:
    id: str
    started: float
    apply: Callable[[], None]
    fail: Callable[[], None]
    resource: str
    error: tuple[str, str] | None = None
    applied: bool = False
    held: bool = False


@dataclass
class Injected:
    method: str
    pattern: re.Pattern[str]
    status: int
    code: str
    message: str
    retry_after: str | None
    times: int


@dataclass
class FakeArm:
    tmp: Path
    operation_seconds: float = 0.4
    retry_after: str = "1"
    tenant_id: str = "00000000-0000-0000-0000-0000000000aa"
    clusters: dict[Key, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, AsyncOp] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    # client id -> (issuer, subject) a federated assertion must carry
    federated: dict[str, tuple[str, str]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    # subscriptions whose role assignments the customer removed: reading them is refused (trust break)
    revoked_subscriptions: set[str] = field(default_factory=set)
    # tokens issued for the AKS API server application: what a cluster's API server accepts, not ARM
    aks_tokens: set[str] = field(default_factory=set)
    # What the catalog reads answer: minor -> is it a preview; VM size -> (vCPUs, GiB, architecture)
    aks_versions: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(PATCHES, False))
    default_version: str = "1.32"
    vm_skus: dict[str, tuple[int, int, str]] = field(
        default_factory=lambda: {
            "Standard_D2s_v5": (2, 8, "x64"),
            "Standard_D4s_v5": (4, 16, "x64"),
            "Standard_D8s_v5": (8, 32, "x64"),
            "Standard_D4ps_v5": (4, 16, "Arm64"),
            "Standard_E4s_v5": (4, 32, "x64"),
        }
    )
    _injected: list[Injected] = field(default_factory=list)
    _op_errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    _holds: list[re.Pattern[str]] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: ThreadedServer | None = None
    ca_path: Path = field(init=False)

    def start(self) -> FakeArm:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = self.tmp / "arm-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        key_path = self.tmp / "arm-server.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(key_path))
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])
        self._server = ThreadedServer(app, certfile=key_path, keyfile=key_path).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server
        return self._server.url

    # --- test controls --------------------------------------------------------------------

    def register_app(self, client_id: str, secret: str) -> None:
        self.secrets[client_id] = secret

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        with self._lock:
            self._injected.append(
                Injected(method, re.compile(path_pattern, re.IGNORECASE), status, code, message, retry_after, times)
            )

    def fail_operation(self, resource_pattern: str, code: str, message: str) -> None:
        """The next async operation on a matching resource ends Failed with this ARM error."""
        with self._lock:
            self._op_errors[resource_pattern] = (code, message)

    def fail_next_pool_operation(self, code: str, message: str, pool: str = r"[^/]+") -> None:
        """The next agent-pool operation (on `pool`, a pattern) ends Failed with this ARM error."""
        self.fail_operation(rf"/agentPools/{pool}$", code, message)

    def hold_operations(self, resource_pattern: str) -> None:
        """Async operations started on a matching resource stay InProgress until released."""
        with self._lock:
            self._holds.append(re.compile(resource_pattern, re.IGNORECASE))

    def release_operations(self) -> None:
        """Held operations finish now (their next poll says so); new ones are not held."""
        with self._lock:
            self._holds.clear()
            for op in self.operations.values():
                if op.held:
                    op.held = False
                    op.started = time.monotonic() - self.operation_seconds

    def held(self, resource_pattern: str) -> bool:
        """Whether an operation on a matching resource is being held now."""
        with self._lock:
            return any(
                op.held and re.search(resource_pattern, op.resource, re.IGNORECASE) for op in self.operations.values()
            )

    def cluster(self, subscription: str, group: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            self._tick()
            cluster = self.clusters.get((subscription, group.lower(), name.lower()))
            return json.loads(json.dumps(self._cluster_json(cluster))) if cluster else None

    def enable_entra_id(self, subscription: str, group: str, name: str) -> None:
        """What `az aks update --enable-aad --enable-azure-rbac` does to a cluster."""
        with self._lock:
            cluster = self.clusters[(subscription, group.lower(), name.lower())]
            cluster["properties"]["aadProfile"] = {"managed": True, "enableAzureRBAC": True}

    def mutations(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.requests if m in ("PUT", "DELETE", "PATCH")]

    # --- wire -------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        host = f"{request.url.scheme}://{request.url.netloc}"
        raw = await request.body()
        if match := _OPENID.match(path):
            return self._openid(host, match.group(1))
        if match := _TOKEN.match(path):
            form = dict(urllib.parse.parse_qsl(raw.decode()))
            return self._token(match.group(1), form)
        body = json.loads(raw) if raw else {}
        with self._lock:
            self.requests.append((request.method, path))
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
                return self._error(401, "InvalidAuthenticationToken", "The access token is invalid.")
            if "api-version" not in request.query_params:
                return self._error(
                    400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required."
                )
            for injected in self._injected:
                if injected.method == request.method and injected.times > 0 and injected.pattern.search(path):
                    injected.times -= 1
                    headers = {"Retry-After": injected.retry_after} if injected.retry_after else {}
                    return self._error(injected.status, injected.code, injected.message, headers)
            self._tick()
            try:
                return self._route(request.method, path, body, host, dict(request.headers), request.url.query)
            except _ArmError as err:
                return self._error(err.status, err.code, err.message)

    def _openid(self, host: str, tenant: str) -> Response:
        base = f"{host}/{tenant}"
        return JSONResponse(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "token"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            }
        )

    def _token(self, tenant: str, form: dict[str, str]) -> Response:
        client_id = form.get("client_id", "")
        ok = tenant == self.tenant_id
        if "client_secret" in form:
            ok = ok and self.secrets.get(client_id) == form["client_secret"]
        elif "client_assertion" in form:
            ok = ok and self._assertion_ok(client_id, form["client_assertion"])
        else:
            ok = False
        if not ok:
            return JSONResponse(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret or assertion provided.",
                    "error_codes": [7000215],
                },
                status_code=401,
            )
        token = f"arm-{secrets.token_hex(16)}"
        with self._lock:
            # A token is for the audience its scope names: ARM, or the AKS API servers.
            if form.get("scope", "").startswith(AKS_SERVER_ID):
                self.aks_tokens.add(token)
            else:
                self.tokens.add(token)
        return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})

    def _assertion_ok(self, client_id: str, assertion: str) -> bool:
        expected = self.federated.get(client_id)
        if expected is None:
            return False
        try:
            payload = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return False
        return (claims.get("iss"), claims.get("sub")) == expected and claims.get("exp", 0) > time.time()

    def _aks_versions(self) -> Response:
        return JSONResponse(
            {
                "values": [
                    {
                        "version": minor,
                        "isDefault": minor == self.default_version,
                        "isPreview": preview,
                        "capabilities": {"supportPlan": ["KubernetesOfficial"]},
                        "patchVersions": {PATCHES.get(minor, f"{minor}.0"): {"upgrades": []}},
                    }
                    for minor, preview in sorted(self.aks_versions.items(), key=lambda kv: _key(kv[0]))
                ]
            }
        )

    def _skus(self, location: str) -> Response:
        return JSONResponse(
            {
                "value": [
                    {
                        "resourceType": "virtualMachines",
                        "name": name,
                        "tier": "Standard",
                        "size": name.removeprefix("Standard_"),
                        "locations": [location],
                        "locationInfo": [{"location": location, "zones": ["1", "2", "3"]}],
                        "capabilities": [
                            {"name": "vCPUs", "value": str(cpu)},
                            {"name": "MemoryGB", "value": str(memory)},
                            {"name": "CpuArchitectureType", "value": architecture},
                        ],
                        "restrictions": [],
                    }
                    for name, (cpu, memory, architecture) in self.vm_skus.items()
                ]
            }
        )

    def _route(
        self, method: str, path: str, body: dict[str, Any], host: str, headers: dict[str, str], query: str = ""
    ) -> Response:
        if match := _AKS_VERSIONS.match(path):
            return self._aks_versions()
        if _SKUS.match(path):
            found = re.search(r"location eq '([^']+)'", urllib.parse.unquote_plus(query))
            return self._skus(found.group(1) if found else "eastus")
        if match := _SUBSCRIPTION.match(path):
            subscription = match.group(1)
            if subscription in self.revoked_subscriptions:
                raise _ArmError(
                    403,
                    "AuthorizationFailed",
                    f"The client does not have authorization to perform action "
                    f"'Microsoft.Resources/subscriptions/read' over scope '/subscriptions/{subscription}'.",
                )
            return JSONResponse(
                {"id": f"/subscriptions/{subscription}", "subscriptionId": subscription, "state": "Enabled"}
            )
        if match := _ASYNC_OP.match(path):
            op = self.operations.get(match.group(1))
            if op is None:
                raise _ArmError(404, "NotFound", "operation not found")
            body = self._op_json(op)
            headers = {"Retry-After": self.retry_after} if body["status"] == "InProgress" else {}
            return JSONResponse(body, headers=headers)
        if match := _DELETE_RESULT.match(path):
            op = self.operations.get(match.group(1))
            if op is None:
                raise _ArmError(404, "NotFound", "operation not found")
            if self._op_status(op) == "InProgress":
                return Response(status_code=202, headers={"Retry-After": self.retry_after})
            return Response(status_code=204)
        if match := _UPGRADE_PROFILE.match(path):
            return self._upgrade_profile(self._key(match), host)
        if match := _USER_CREDENTIAL.match(path):
            return self._user_credential(self._key(match))
        if match := _ADMIN_CREDENTIAL.match(path):
            cluster = self._cluster_or_404(self._key(match))
            if cluster["properties"].get("disableLocalAccounts"):
                raise _ArmError(
                    400,
                    "BadRequest",
                    "Getting static credential is not allowed because this cluster is set to disable local accounts.",
                )
            return self._user_credential(self._key(match))
        if match := _POOLS.match(path):
            cluster = self._cluster_or_404(self._key(match))
            return JSONResponse({"value": [self._pool_json(cluster, p) for p in cluster["_pools"].values()]})
        if match := _POOL.match(path):
            return self._pool_call(method, self._key(match), match.group(4), body, host, path, headers)
        if match := _CLUSTER.match(path):
            return self._cluster_call(method, self._key(match), match.group(3), body, host, path)
        raise _ArmError(404, "InvalidResourceType", f"no such resource {path}")

    @staticmethod
    def _key(match: re.Match[str]) -> Key:
        return (match.group(1), match.group(2).lower(), match.group(3).lower())

    def _cluster_or_404(self, key: Key) -> dict[str, Any]:
        cluster = self.clusters.get(key)
        if cluster is None:
            raise _ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerService/managedClusters/{key[2]}' under resource group "
                f"'{key[1]}' was not found.",
            )
        return cluster

    def _busy(self, resource: str) -> None:
        for op in self.operations.values():
            if not op.applied and op.resource.lower().startswith(resource.lower()):
                raise _ArmError(
                    409,
                    "OperationNotAllowed",
                    "Operation is not allowed because there's an in progress operation on the managed cluster.",
                )

    def _begin(
        self, resource: str, location: str, host: str, apply: Callable[[], None], fail: Callable[[], None]
    ) -> dict[str, str]:
        op_id = f"op-{next(self._ids)}-{secrets.token_hex(4)}"
        error = next((e for pattern, e in self._op_errors.items() if re.search(pattern, resource, re.IGNORECASE)), None)
        if error:
            self._op_errors = {p: e for p, e in self._op_errors.items() if e is not error}
        held = any(pattern.search(resource) for pattern in self._holds)
        self.operations[op_id] = AsyncOp(op_id, time.monotonic(), apply, fail, resource, error, held=held)
        sub = resource.split("/")[2]
        base = f"{host}/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{location}"
        return {
            "Azure-AsyncOperation": f"{base}/operations/{op_id}?api-version=2026-08-01",
            "Location": f"{base}/operationresults/{op_id}?api-version=2026-08-01",
            "Retry-After": self.retry_after,
        }

    def _cluster_json(self, cluster: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in cluster.items() if not k.startswith("_")}
        view["properties"] = dict(view["properties"])
        view["properties"]["agentPoolProfiles"] = [
            {"name": name, **pool["properties"]} for name, pool in cluster["_pools"].items()
        ]
        return view

    def _pool_json(self, cluster: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in pool.items() if not k.startswith("_")}

    def _cluster_call(self, method: str, key: Key, name: str, body: dict[str, Any], host: str, path: str) -> Response:
        resource = path
        if method == "GET":
            return JSONResponse(self._cluster_json(self._cluster_or_404(key)))
        if method == "DELETE":
            cluster = self.clusters.get(key)
            if cluster is None:
                return Response(status_code=204)
            self._busy(resource)
            cluster["properties"]["provisioningState"] = "Deleting"

            def delete() -> None:
                self.clusters.pop(key, None)

            def failed() -> None:
                cluster["properties"]["provisioningState"] = "Failed"

            headers = self._begin(resource, cluster["location"], host, delete, failed)
            return Response(status_code=202, headers=headers)
        if method == "PUT":
            return self._put_cluster(key, name, body, host, resource)
        raise _ArmError(405, "MethodNotAllowed", f"{method} is not allowed")

    def _check_version_move(self, current: str, wanted: str) -> None:
        """A control plane moves up one minor at a time, never down (AKS's upgrade rules)."""
        if _key(wanted) == _key(current):
            return
        offered = ",".join(_full(v) for v in UPGRADES.get(_minor(current), []))
        if _key(wanted) < _key(current):
            raise _ArmError(
                400,
                "OperationNotAllowed",
                f"Downgrading Kubernetes version {current} to {_full(wanted)} is not allowed. Available upgrades: "
                f"{offered}. Please see https://aka.ms/aks-supported-k8s-ver for version details.",
            )
        if _minor(wanted) not in UPGRADES.get(_minor(current), []):
            raise _ArmError(
                400,
                "OperationNotAllowed",
                f"Upgrading Kubernetes version {current} to {_full(wanted)} is not allowed. Available upgrades: "
                f"{offered}. Please see https://aka.ms/aks-supported-k8s-ver for version details.",
            )

    @staticmethod
    def _check_pool(name: str, props: dict[str, Any], control: str, existing: dict[str, Any] | None) -> None:
        """What AKS refuses in one agent pool's properties, against its control plane's version."""
        if not _POOL_NAME.match(name):
            raise _ArmError(
                400,
                "InvalidParameter",
                f"The value of parameter agentPoolProfile.name is invalid: {name!r}. Agent pool names must start "
                "with a lowercase letter, contain only lowercase letters and numbers, and be at most 12 characters.",
            )
        low, high, count = props.get("minCount"), props.get("maxCount"), props.get("count")
        if props.get("enableAutoScaling"):
            if low is None or high is None:
                raise _ArmError(400, "InvalidParameter", "minCount and maxCount are required with enableAutoScaling.")
            if low > high:
                raise _ArmError(
                    400,
                    "InvalidParameter",
                    f"The value of parameter agentPoolProfile.minCount ({low}) must be less than or equal to "
                    f"agentPoolProfile.maxCount ({high}).",
                )
            if count is not None and not low <= count <= high:
                raise _ArmError(
                    400,
                    "InvalidParameter",
                    f"The value of parameter agentPoolProfile.count ({count}) must be between minCount ({low}) and "
                    f"maxCount ({high}).",
                )
        version = props.get("orchestratorVersion")
        if version and _key(version) > _key(control):
            raise _ArmError(
                400,
                "NodePoolMcVersionIncompatible",
                f"Node pool version {_full(version)} and control plane version {_full(control)} are incompatible. "
                f"Minor version of node pool version {_key(version)[1]} is bigger than control plane version "
                f"{_key(control)[1]}. For more information, please check https://aka.ms/version-skew-policy",
            )
        if existing is None:
            return
        current = existing["properties"]
        if version and _key(version) < _key(current["currentOrchestratorVersion"]):
            raise _ArmError(
                400,
                "OperationNotAllowed",
                f"Downgrading Kubernetes version {current['currentOrchestratorVersion']} to {_full(version)} is not "
                "allowed for agent pool " + name + ".",
            )
        if props.get("vmSize") and props["vmSize"] != current.get("vmSize"):
            raise _ArmError(
                400,
                "PropertyChangeNotAllowed",
                f"Changing property 'vmSize' is not allowed: agent pool {name} has {current.get('vmSize')}.",
            )

    def _put_cluster(self, key: Key, name: str, body: dict[str, Any], host: str, resource: str) -> Response:
        existing = self.clusters.get(key)
        if existing is not None:
            self._busy(resource)
        location = body.get("location")
        if not location:
            raise _ArmError(400, "InvalidParameter", "Required parameter 'location' is missing.")
        if existing is not None and existing["location"] != location:
            raise _ArmError(400, "OperationNotAllowed", "The location of an existing cluster cannot be changed.")
        props = _writable(dict(body.get("properties") or {}))
        profiles = props.pop("agentPoolProfiles", None) or []
        if existing is None and not profiles:
            raise _ArmError(400, "InvalidParameter", "At least one agent pool profile is required.")
        current = existing["properties"] if existing is not None else {}
        version = props.get("kubernetesVersion") or current.get("kubernetesVersion") or "1.32"
        if existing is not None:
            self._check_version_move(current["currentKubernetesVersion"], version)
        if props.get("disableLocalAccounts") and not (props.get("aadProfile") or current.get("aadProfile") or {}).get(
            "managed"
        ):
            raise _ArmError(
                400, "BadRequest", "To disable local accounts, Microsoft Entra ID integration (aadProfile) is required."
            )
        pools = existing["_pools"] if existing is not None else {}
        for profile in profiles:
            pool_props = _writable({k: v for k, v in profile.items() if k != "name"})
            self._check_pool(profile["name"], pool_props, version, pools.get(profile["name"]))
        sub = key[0]
        cluster_id = (
            f"/subscriptions/{sub}/resourcegroups/{key[1]}/providers/Microsoft.ContainerService/managedClusters/{name}"
        )
        if existing is None:
            cluster = {
                "id": cluster_id,
                "name": name,
                "type": "Microsoft.ContainerService/ManagedClusters",
                "location": location,
                "tags": body.get("tags") or {},
                "identity": body.get("identity") or {"type": "SystemAssigned"},
                "properties": {
                    **props,
                    "provisioningState": "Creating",
                    "powerState": {"code": "Running"},
                    "kubernetesVersion": version,
                    "currentKubernetesVersion": _full(version),
                    "fqdn": f"{props.get('dnsPrefix', name)}-{secrets.token_hex(4)}.hcp.{location}.azmk8s.io",
                },
                "_pools": {},
            }
            self.clusters[key] = cluster
            status = 201
        else:
            cluster = existing
            status = 200
        target = {**cluster["properties"], **props, "kubernetesVersion": version}
        pool_targets = {p["name"]: _writable({k: v for k, v in p.items() if k != "name"}) for p in profiles}
        created = [n for n in pool_targets if n not in cluster["_pools"]]
        for pool_name in created:
            cluster["_pools"][pool_name] = self._new_pool(cluster, pool_name, pool_targets[pool_name], version)
        previous_state = cluster["properties"].get("provisioningState")
        cluster["properties"]["provisioningState"] = "Creating" if status == 201 else "Updating"
        tags = body.get("tags")

        def apply() -> None:
            cluster["properties"].update(target)
            cluster["properties"]["currentKubernetesVersion"] = _full(target["kubernetesVersion"])
            cluster["properties"]["provisioningState"] = "Succeeded"
            if tags is not None:
                cluster["tags"] = tags
            for pool_name, pool_props in pool_targets.items():
                pool = cluster["_pools"][pool_name]
                pool["properties"].update(pool_props)
                pool["properties"]["provisioningState"] = "Succeeded"
                pool["properties"]["currentOrchestratorVersion"] = _full(
                    pool["properties"].get("orchestratorVersion") or target["kubernetesVersion"]
                )

        def failed() -> None:
            cluster["properties"]["provisioningState"] = "Failed" if status == 201 else previous_state or "Failed"
            for pool_name in created:
                cluster["_pools"][pool_name]["properties"]["provisioningState"] = "Failed"

        headers = self._begin(resource, location, host, apply, failed)
        return JSONResponse(self._cluster_json(cluster), status_code=status, headers=headers)

    def _new_pool(self, cluster: dict[str, Any], name: str, props: dict[str, Any], version: str) -> dict[str, Any]:
        return {
            "id": f"{cluster['id']}/agentPools/{name}",
            "name": name,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": {
                **props,
                "provisioningState": "Creating",
                "orchestratorVersion": props.get("orchestratorVersion") or version,
                "currentOrchestratorVersion": _full(props.get("orchestratorVersion") or version),
                "powerState": {"code": "Running"},
            },
        }

    def _pool_call(
        self, method: str, key: Key, name: str, body: dict[str, Any], host: str, path: str, headers: dict[str, str]
    ) -> Response:
        cluster = self._cluster_or_404(key)
        pool = cluster["_pools"].get(name)
        cluster_resource = path.rsplit("/agentPools/", 1)[0]
        if method == "GET":
            if pool is None:
                raise _ArmError(404, "NotFound", f"agent pool {name} not found")
            return JSONResponse(self._pool_json(cluster, pool))
        if method == "DELETE":
            if pool is None:
                return Response(status_code=204)
            self._busy(cluster_resource)
            others = [p for n, p in cluster["_pools"].items() if n != name]
            if pool["properties"].get("mode") == "System" and not any(
                p["properties"].get("mode") == "System" for p in others
            ):
                raise _ArmError(
                    400,
                    "OperationNotAllowed",
                    f"Agent pool {name} is the cluster's last System agent pool: a cluster must have at least one.",
                )
            pool["properties"]["provisioningState"] = "Deleting"

            def delete() -> None:
                cluster["_pools"].pop(name, None)

            def delete_failed() -> None:
                pool["properties"]["provisioningState"] = "Failed"

            answer = self._begin(path, cluster["location"], host, delete, delete_failed)
            return Response(status_code=202, headers=answer)
        if method == "PUT":
            if headers.get("if-none-match") == "*" and pool is not None:
                raise _ArmError(
                    412,
                    "PreconditionFailed",
                    f"Agent pool {name} already exists; the request's If-None-Match: * allows only a create.",
                )
            self._busy(cluster_resource)
            props = _writable(dict(body.get("properties") or {}))
            control = cluster["properties"]["currentKubernetesVersion"]
            self._check_pool(name, props, control, pool)
            status = 200
            if pool is None:
                props.setdefault("orchestratorVersion", _minor(control))
                pool = cluster["_pools"][name] = self._new_pool(cluster, name, props, control)
                status = 201
            else:
                pool["properties"]["provisioningState"] = "Updating"
            target = pool

            def apply() -> None:
                target["properties"].update(props)
                target["properties"]["provisioningState"] = "Succeeded"
                target["properties"]["currentOrchestratorVersion"] = _full(target["properties"]["orchestratorVersion"])

            def failed() -> None:
                # A failed create leaves the pool, Failed, as AKS does: delete it or PUT it again.
                target["properties"]["provisioningState"] = "Failed"

            answer = self._begin(path, cluster["location"], host, apply, failed)
            return JSONResponse(self._pool_json(cluster, pool), status_code=status, headers=answer)
        raise _ArmError(405, "MethodNotAllowed", f"{method} is not allowed")

    def _upgrade_profile(self, key: Key, host: str) -> Response:
        cluster = self._cluster_or_404(key)
        version = cluster["properties"]["currentKubernetesVersion"]
        return JSONResponse(
            {
                "id": f"{cluster['id']}/upgradeprofiles/default",
                "name": "default",
                "type": "Microsoft.ContainerService/managedClusters/upgradeprofiles",
                "properties": {
                    "controlPlaneProfile": {
                        "kubernetesVersion": version,
                        "osType": "Linux",
                        "upgrades": [{"kubernetesVersion": _full(v)} for v in UPGRADES.get(_minor(version), [])],
                    },
                    "agentPoolProfiles": [
                        {
                            "name": name,
                            "kubernetesVersion": pool["properties"]["currentOrchestratorVersion"],
                            "osType": "Linux",
                            "upgrades": [{"kubernetesVersion": _full(_minor(version))}]
                            if _minor(pool["properties"]["currentOrchestratorVersion"]) != _minor(version)
                            else [],
                        }
                        for name, pool in cluster["_pools"].items()
                    ],
                },
            }
        )

    def _user_credential(self, key: Key) -> Response:
        """As AKS answers: server and CA, and for an Entra ID cluster (`aadProfile.managed`) a
        `kubelogin` exec user (`--login devicecode` unless converted); for a cluster with local
        accounts, a client certificate that AKS does not expire."""
        cluster = self._cluster_or_404(key)
        name, group = cluster["name"], key[1]
        if (cluster["properties"].get("aadProfile") or {}).get("managed"):
            user: dict[str, Any] = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "command": "kubelogin",
                    "args": [
                        *("get-token", "--environment", "AzurePublicCloud", "--server-id", AKS_SERVER_ID),
                        *("--client-id", "80faf920-1908-4b52-b5ef-a8e7bedfc67a", "--tenant-id", self.tenant_id),
                        *("--login", "devicecode"),
                    ],
                    "provideClusterInfo": False,
                }
            }
        else:
            user = {
                "client-certificate-data": base64.b64encode(b"fake client certificate").decode(),
                "client-key-data": base64.b64encode(b"fake client key").decode(),
                "token": secrets.token_hex(32),
            }
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "certificate-authority-data": FAKE_CA_DATA,
                        "server": f"https://{cluster['properties']['fqdn']}:443",
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"clusterUser_{group}_{name}"}}],
            "current-context": name,
            "users": [{"name": f"clusterUser_{group}_{name}", "user": user}],
        }
        encoded = base64.b64encode(json.dumps(kubeconfig).encode()).decode()  # JSON is YAML too
        return JSONResponse({"kubeconfigs": [{"name": "clusterUser", "value": encoded}]})

    def _op_status(self, op: AsyncOp) -> str:
        if op.held or time.monotonic() - op.started < self.operation_seconds:
            return "InProgress"
        return "Failed" if op.error else "Succeeded"

    def _op_json(self, op: AsyncOp) -> dict[str, Any]:
        status = self._op_status(op)
        body: dict[str, Any] = {"id": op.id, "name": op.id, "status": status, "startTime": _now()}
        if status != "InProgress":
            body["endTime"] = _now()
        if status == "Failed" and op.error:
            body["error"] = {"code": op.error[0], "message": op.error[1]}
        return body

    def _tick(self) -> None:
        for op in self.operations.values():
            if not op.applied and self._op_status(op) != "InProgress":
                op.applied = True
                (op.fail if op.error else op.apply)()

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class _ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
