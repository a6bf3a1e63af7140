"""A fake GKE (container.googleapis.com v1) REST server, wire-faithful for what we call.

It speaks the paths and camelCase JSON that `google-cloud-container`'s `ClusterManagerClient`
uses with `transport="rest"`: clusters and node pools under
`/v1/projects/{p}/locations/{l}/clusters[/{c}[/nodePools/{np}]]` with `:verb` custom methods,
and long-running `Operation`s at `/v1/projects/{p}/locations/{l}/operations/{op}` that move
PENDING -> RUNNING -> DONE over (fake-configurable) time. A mutation takes effect when its
operation is DONE. Like GKE, a cluster runs one operation at a time (another mutation answers
400 FAILED_PRECONDITION), creating an existing cluster is 409 ALREADY_EXISTS, and errors use
Google's error JSON (`{"error": {"code", "message", "status", "details": [ErrorInfo]}}`).

It also plays Google STS (`POST /v1/token`, token exchange for Workload Identity Federation) and
IAM Credentials (`:generateAccessToken`), so cloud connect runs google-auth's real federation
flow against it: `trust` is what the customer's Cloud Shell script sets up (a pool provider
trusting an issuer and subject, and the service account binding). Platform tokens are checked
for issuer, subject, audience and expiry; their signatures are not verified here.

It refuses what GKE refuses, with GKE's error shapes: a master downgrade or a skipped minor
version, a version GKE does not offer, and a node pool newer than its master (400
INVALID_ARGUMENT); autoscaling with min above max, or per-zone and total limits both set (400);
a cluster or node pool name already taken (409 ALREADY_EXISTS); a mutation while another
operation runs on the cluster (400 FAILED_PRECONDITION); malformed authorized networks and
maintenance windows shorter than GKE allows (400); a stale label or maintenance-policy
fingerprint (409 ABORTED). A failed node-pool create leaves the pool in ERROR, as GKE does.

`GET .../locations/{l}/serverConfig` answers from the fake's state (`server_versions`, per minor
the full version GKE resolves it to, and `default_version`; channels are derived: RAPID the
newest three, REGULAR and STABLE one and two minors behind, EXTENDED the oldest four), so a test
publishes or retires a version by editing it.

Tests steer it with `fail_next` (an HTTP error for matching requests), `fail_operation` (an
operation of a type that ends DONE with an error, as GKE reports quota shortfalls found while
creating), `fail_next_node_pool_operation` (the next node-pool operation, whatever its type,
ends in error) and `hold`/`hold_node_pool_operations` with `release` (operations stay RUNNING
until released, so a test can act while one is in flight: cancel an update in NODE_GROUPS, or
kill a worker while the cluster is PROVISIONING).

It is one module past 400 lines on purpose: it is one server, whose GKE, STS and IAM Credentials
parts share one request log, one lock and one notion of who is calling.
"""

from __future__ import annotations

import base64
import ipaddress
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
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
_STATUS |= {409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}

_CLUSTER = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/:]+)(?::(\w+))?$")
_CLUSTERS = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters$")
_INVALID = 400
_POOLS = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)/nodePools$")
_POOL = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)/nodePools/([^/:]+)(?::(\w+))?$")
_STS = "/v1/token"
_GENERATE = re.compile(r"^/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken$")
_OPERATION = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/operations/([^/:]+)$")
_OPERATIONS = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/operations$")
_SERVER_CONFIG = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/serverConfig$")

FAKE_CA_DATA = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nZmFrZSBHS0UgY2x1c3RlciBDQQ==\n-----END CERTIFICATE-----\n"
).decode()
PATCHES = {"1.29": "1.29.15-gke.1000", "1.30": "1.30.12-gke.1200", "1.31": "1.31.8-gke.1100"}
PATCHES |= {"1.32": "1.32.4-gke.1400", "1.33": "1.33.1-gke.1300"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _full_version(version: str | None, default: str = "1.32", offered: dict[str, str] | None = None) -> str:
    if not version or version in ("latest", "-"):
        version = default
    minor = ".".join(version.split(".")[:2])
    return (offered or PATCHES).get(minor, version) if version.count(".") == 1 else version


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _text_minor(key: tuple[int, int]) -> str:
    return f"{key[0]}.{key[1]}"


def _offered(version: str | None, offered: dict[str, str], default: str) -> str:
    """The full version GKE resolves `version` to; refuses one it does not offer (`offered`:
    what serverConfig lists now)."""
    full = _full_version(version, default, offered)
    if ".".join(full.split(".")[:2]) not in offered:
        raise _GoogleError(_INVALID, f"Version {version!r} is invalid or not supported.")
    return full


def _autoscaling_problem(autoscaling: dict[str, Any] | None) -> str | None:
    """What GKE says about these autoscaling limits (proto3 JSON omits zeros), or None."""
    if not autoscaling or not autoscaling.get("enabled"):
        return None
    per_zone = "minNodeCount" in autoscaling or "maxNodeCount" in autoscaling
    total = "totalMinNodeCount" in autoscaling or "totalMaxNodeCount" in autoscaling
    if per_zone and total:
        return "Autoscaling: total node count limits and per zone node count limits cannot both be set."
    low, high = ("totalMinNodeCount", "totalMaxNodeCount") if total else ("minNodeCount", "maxNodeCount")
    minimum, maximum = int(autoscaling.get(low, 0)), int(autoscaling.get(high, 0))
    if maximum < 1:
        return f"Autoscaling: {high} must be greater than zero."
    if minimum > maximum:
        return f"Autoscaling: {low} ({minimum}) must not be greater than {high} ({maximum})."
    return None


def _duration_seconds(start: str, end: str) -> float:
    def parse(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


@dataclass
class Injected:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    reason: str | None
    times: int


@dataclass
class FakeOperation:
    name: str
    project: str
    location: str
    operation_type: str
    target: str
    cluster_key: tuple[str, str, str]
    started: float
    apply: Callable[[], None]
    error: tuple[int, str] | None = None
    done_at: float | None = None
    applied: bool = False
    # What a failed operation leaves behind (a pool in ERROR, a cluster back to RUNNING).
    on_error: Callable[[str], None] | None = None
    held: bool = False  # stays RUNNING until `FakeGke.release`

    @property
    def node_pool(self) -> bool:
        return "/nodePools/" in self.target

    def to_json(self, status: str, host: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "zone": self.location,
            "location": self.location,
            "operationType": self.operation_type,
            "status": status,
            "selfLink": f"{host}/v1/projects/{self.project}/locations/{self.location}/operations/{self.name}",
            "targetLink": f"{host}/v1/{self.target}",
            "startTime": datetime.fromtimestamp(self.started, UTC).isoformat().replace("+00:00", "Z"),
        }
        if status == "DONE":
            body["endTime"] = _now()
            if self.error:
                code, message = self.error
                body["statusMessage"] = message
                body["error"] = {"code": code, "message": message}
        return body


@dataclass
class FakeGke:
    pending_seconds: float = 0.1
    running_seconds: float = 0.3
    token: str = "fake-gcp-token"
    clusters: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, FakeOperation] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _injected: list[Injected] = field(default_factory=list)
    _operation_errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    _node_pool_error: tuple[int, str, str | None] | None = None
    _held_types: set[str] = field(default_factory=set)
    _hold_node_pools: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _server: ThreadedServer | None = None
    # audience -> (issuer, subject) of a Workload Identity pool provider, and the service
    # account the subject may impersonate
    trusted: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    federated_tokens: dict[str, str] = field(default_factory=dict)
    # access token -> service account email, for tokens minted by generateAccessToken
    service_account_tokens: dict[str, str] = field(default_factory=dict)
    # who made each GKE call: "static" (the test token) or a service account email
    callers: list[str] = field(default_factory=list)
    # what serverConfig offers: minor -> full version, and the default minor
    server_versions: dict[str, str] = field(default_factory=lambda: dict(PATCHES))
    default_version: str = "1.32"

    # --- test controls --------------------------------------------------------------------

    def start(self) -> FakeGke:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])
        self._server = ThreadedServer(app).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server
        return self._server.url

    def fail_next(
        self, method: str, path_pattern: str, status: int, message: str, *, reason: str | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` matching requests with a Google error."""
        with self._lock:
            self._injected.append(Injected(method, re.compile(path_pattern), status, message, reason, times))

    def fail_operation(self, operation_type: str, code: int, message: str) -> None:
        """The next operation of this type ends DONE with this error (and changes nothing)."""
        with self._lock:
            self._operation_errors[operation_type] = (code, message)

    def fail_next_node_pool_operation(self, code: int, message: str, operation_type: str | None = None) -> None:
        """The next node-pool operation (create, delete, upgrade, resize, autoscaling; of
        `operation_type` if given) ends DONE with this error and changes nothing; a failed create
        leaves the pool in ERROR."""
        with self._lock:
            self._node_pool_error = (code, message, operation_type)

    def hold(self, *operation_types: str) -> None:
        """Operations of these types started from now on stay RUNNING until `release`."""
        with self._lock:
            self._held_types.update(operation_types)

    def hold_node_pool_operations(self) -> None:
        """Node-pool operations started from now on stay RUNNING until `release`."""
        with self._lock:
            self._hold_node_pools = True

    def release(self) -> None:
        """Stop holding: held operations finish (DONE at the next read)."""
        with self._lock:
            self._held_types.clear()
            self._hold_node_pools = False
            for op in self.operations.values():
                op.held = False

    def held(self) -> list[FakeOperation]:
        """Operations held RUNNING right now."""
        with self._lock:
            self._tick()
            return [op for op in self.operations.values() if op.held and self._op_status(op) == "RUNNING"]

    def trust(self, audience: str, issuer: str, subject: str, service_account: str) -> None:
        """What the cloud connect script does: trust `issuer` for `subject` to act as the SA."""
        with self._lock:
            self.trusted[audience] = (issuer, subject, service_account)

    def cluster(self, project: str, location: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            self._tick()
            return self.clusters.get((project, location, name))

    def mutations(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.requests if m != "GET"]

    # --- wire -------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        method = request.method
        raw = await request.body()
        body = json.loads(raw) if method in ("POST", "PUT", "PATCH") and raw and path != _STS else {}
        if path == _STS:
            return self._sts(dict(urllib.parse.parse_qsl((await request.body()).decode())))
        if match := _GENERATE.match(path):
            return self._generate(match.group(1), request.headers.get("authorization", ""))
        with self._lock:
            self.requests.append((method, path))
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            caller = "static" if bearer == self.token else self.service_account_tokens.get(bearer)
            if caller is None:
                return self._error(401, "Request had invalid authentication credentials.", "CREDENTIALS_MISSING")
            self.callers.append(caller)
            for injected in self._injected:
                if injected.method == method and injected.times > 0 and injected.pattern.search(path):
                    injected.times -= 1
                    return self._error(injected.status, injected.message, injected.reason)
            self._tick()
            try:
                return self._route(method, path, body, f"{request.url.scheme}://{request.url.netloc}")
            except _GoogleError as err:
                return self._error(err.status, err.message, err.reason, err.status_name)

    def _sts(self, form: dict[str, str]) -> Response:
        trusted = self.trusted.get(form.get("audience", ""))
        claims = _claims(form.get("subject_token", ""))
        if trusted is None or claims is None:
            return JSONResponse(
                {
                    "error": "invalid_target",
                    "error_description": "The target service indicated by the audience is invalid.",
                },
                status_code=400,
            )
        issuer, subject, _ = trusted
        expected_aud = "https:" + form["audience"]
        if (claims.get("iss"), claims.get("sub"), claims.get("aud")) != (issuer, subject, expected_aud) or claims.get(
            "exp", 0
        ) < time.time():
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "The incoming token is not trusted by the provider."},
                status_code=400,
            )
        token = f"federated-{secrets.token_hex(12)}"
        with self._lock:
            self.federated_tokens[token] = form["audience"]
        return JSONResponse(
            {
                "access_token": token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 3600,
            }
        )

    def _generate(self, email: str, authorization: str) -> Response:
        audience = self.federated_tokens.get(authorization.removeprefix("Bearer "))
        if audience is None:
            return self._error(401, "Request had invalid authentication credentials.")
        if self.trusted.get(audience, ("", "", ""))[2] != email:
            return self._error(
                403, f"Permission 'iam.serviceAccounts.getAccessToken' denied on {email}", "IAM_PERMISSION_DENIED"
            )
        expire = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        token = f"sa-{secrets.token_hex(12)}"
        with self._lock:
            self.service_account_tokens[token] = email
        return JSONResponse({"accessToken": token, "expireTime": expire})

    def _offers(self, version: str | None) -> str:
        return _offered(version, self.server_versions, self.default_version)

    def _server_config(self) -> Response:
        minors = sorted(self.server_versions, key=_minor)
        full = [self.server_versions[m] for m in reversed(minors)]  # newest first, as GKE lists them

        def channel(name: str, chosen: list[str]) -> dict[str, Any]:
            newest_first = [self.server_versions[m] for m in sorted(chosen, key=_minor, reverse=True)]
            return {
                "channel": name,
                "defaultVersion": newest_first[min(1, len(newest_first) - 1)],
                "validVersions": newest_first,
            }

        channels = [
            channel("RAPID", minors[-3:]),
            channel("REGULAR", minors[-4:-1] or minors),
            channel("STABLE", minors[-5:-2] or minors),
            channel("EXTENDED", minors[:4]),
        ]
        return JSONResponse(
            {
                "defaultClusterVersion": self.server_versions.get(self.default_version, full[0]),
                "validMasterVersions": full,
                "validNodeVersions": full,
                "defaultImageType": "COS_CONTAINERD",
                "validImageTypes": ["COS_CONTAINERD", "UBUNTU_CONTAINERD"],
                "channels": channels,
            }
        )

    def _route(self, method: str, path: str, body: dict[str, Any], host: str) -> Response:
        if _SERVER_CONFIG.match(path) and method == "GET":
            return self._server_config()
        if (match := _OPERATIONS.match(path)) and method == "GET":
            where = (match.group(1), match.group(2))
            listed = [op for op in self.operations.values() if (op.project, op.location) == where]
            return JSONResponse({"operations": [op.to_json(self._op_status(op), host) for op in listed]})
        if match := _OPERATION.match(path):
            op = self.operations.get(match.group(3))
            if op is None or method != "GET":
                raise _GoogleError(404, f"Operation {match.group(3)} not found.")
            return JSONResponse(op.to_json(self._op_status(op), host))
        if match := _CLUSTERS.match(path):
            if method == "POST":
                return self._create_cluster(match.group(1), match.group(2), body["cluster"], host)
            listed = [c for k, c in self.clusters.items() if k[:2] == (match.group(1), match.group(2))]
            return JSONResponse({"clusters": listed})
        if match := _POOLS.match(path):
            key = (match.group(1), match.group(2), match.group(3))
            if method == "POST":
                return self._create_pool(key, body["nodePool"], host)
            return JSONResponse({"nodePools": self._cluster_or_404(key)["nodePools"]})
        if match := _POOL.match(path):
            key = (match.group(1), match.group(2), match.group(3))
            return self._pool_call(method, key, match.group(4), match.group(5), body, host)
        if match := _CLUSTER.match(path):
            key = (match.group(1), match.group(2), match.group(3))
            return self._cluster_call(method, key, match.group(4), body, host)
        raise _GoogleError(404, f"no such method {method} {path}")

    def _cluster_or_404(self, key: tuple[str, str, str]) -> dict[str, Any]:
        cluster = self.clusters.get(key)
        if cluster is None:
            raise _GoogleError(404, f"Not found: projects/{key[0]}/locations/{key[1]}/clusters/{key[2]}.")
        return cluster

    def _busy(self, key: tuple[str, str, str]) -> None:
        for op in self.operations.values():
            if op.cluster_key == key and not op.applied:
                raise _GoogleError(
                    400,
                    f"Cluster is running incompatible operation {op.name}.",
                    status_name="FAILED_PRECONDITION",
                )

    def _start(
        self,
        key: tuple[str, str, str],
        op_type: str,
        target: str,
        apply: Callable[[], None],
        host: str,
        on_error: Callable[[str], None] | None = None,
    ) -> Response:
        name = f"operation-{next(self._ids)}-{int(time.time())}"
        error = self._operation_errors.pop(op_type, None)
        op = FakeOperation(name, key[0], key[1], op_type, target, key, time.monotonic(), apply, error)
        op.on_error = on_error
        failure = self._node_pool_error
        if op.node_pool and error is None and failure is not None and failure[2] in (None, op_type):
            op.error, self._node_pool_error = failure[:2], None
        op.held = op_type in self._held_types or (op.node_pool and self._hold_node_pools)
        self.operations[name] = op
        return JSONResponse(op.to_json("PENDING", host))

    def _create_cluster(self, project: str, location: str, spec: dict[str, Any], host: str) -> Response:
        key = (project, location, spec["name"])
        if key in self.clusters:
            raise _GoogleError(409, f"Already exists: projects/{project}/locations/{location}/clusters/{spec['name']}.")
        version = self._offers(spec.get("initialClusterVersion"))
        pools = []
        names: set[str] = set()
        for pool in spec.get("nodePools") or []:
            if pool["name"] in names:
                raise _GoogleError(_INVALID, f"Node pool names must be unique: {pool['name']} is given twice.")
            names.add(pool["name"])
            pools.append(self._pool_json(key, pool, version, "PROVISIONING"))
        cluster = {
            **spec,
            "location": location,
            "zone": location,
            "status": "PROVISIONING",
            "selfLink": f"{host}/v1/projects/{project}/locations/{location}/clusters/{spec['name']}",
            "createTime": _now(),
            "currentMasterVersion": version,
            "currentNodeVersion": version,
            "initialClusterVersion": version,
            "endpoint": "",
            "nodePools": pools,
            "labelFingerprint": "fp-1",
        }
        self.clusters[key] = cluster

        def apply() -> None:
            cluster["status"] = "RUNNING"
            cluster["endpoint"] = f"34.1.{len(self.clusters)}.10"
            cluster["currentNodeCount"] = sum(int(p.get("initialNodeCount", 0)) for p in cluster["nodePools"])
            # base64 of the cluster CA's PEM, as GKE reports it once the control plane runs
            cluster["masterAuth"] = {"clusterCaCertificate": FAKE_CA_DATA}
            for pool in cluster["nodePools"]:
                pool["status"] = "RUNNING"

        def failed(message: str) -> None:
            cluster["status"] = "ERROR"
            cluster["statusMessage"] = message

        target = f"projects/{project}/locations/{location}/clusters/{spec['name']}"
        return self._start(key, "CREATE_CLUSTER", target, apply, host, failed)

    def _pool_json(self, key: tuple[str, str, str], pool: dict[str, Any], master: str, status: str) -> dict[str, Any]:
        """A pool as GKE stores it; refuses bad autoscaling and a version newer than `master`."""
        problem = _autoscaling_problem(pool.get("autoscaling"))
        if problem:
            raise _GoogleError(_INVALID, f"Node pool {pool['name']}: {problem}")
        version = self._offers(pool["version"]) if pool.get("version") else master
        self._not_newer(pool["name"], version, master)
        return {
            **pool,
            "status": status,
            "version": version,
            "selfLink": f"projects/{key[0]}/locations/{key[1]}/clusters/{key[2]}/nodePools/{pool['name']}",
        }

    @staticmethod
    def _not_newer(pool: str, version: str, master: str) -> None:
        if _minor(version) > _minor(master):
            raise _GoogleError(
                _INVALID,
                f"Node pool {pool}: node version {version} must not be newer than the master version {master}.",
            )

    def _cluster_call(
        self, method: str, key: tuple[str, str, str], verb: str | None, body: dict[str, Any], host: str
    ) -> Response:
        cluster = self._cluster_or_404(key)
        target = f"projects/{key[0]}/locations/{key[1]}/clusters/{key[2]}"
        if method == "GET" and verb is None:
            return JSONResponse(cluster)
        self._busy(key)
        if method == "DELETE" and verb is None:
            cluster["status"] = "STOPPING"

            def delete() -> None:
                self.clusters.pop(key, None)

            return self._start(key, "DELETE_CLUSTER", target, delete, host)
        if method == "PUT" and verb is None:
            update = body.get("update") or {}
            master = self._master_upgrade(cluster, update.get("desiredMasterVersion"))
            networks = update.get("desiredMasterAuthorizedNetworksConfig")
            if networks is not None:
                self._check_networks(networks)
            cluster["status"] = "RECONCILING"

            def apply_update() -> None:
                cluster["status"] = "RUNNING"
                if master is not None:
                    cluster["currentMasterVersion"] = master
                if "desiredReleaseChannel" in update:
                    cluster["releaseChannel"] = update["desiredReleaseChannel"]
                if networks is not None:
                    cluster["masterAuthorizedNetworksConfig"] = networks

            op_type = "UPGRADE_MASTER" if master is not None else "UPDATE_CLUSTER"
            return self._start(key, op_type, target, apply_update, host, lambda _: self._running(cluster))
        if method == "POST" and verb == "setMaintenancePolicy":
            policy = body.get("maintenancePolicy") or {}
            self._check_policy(cluster, policy)

            def set_policy() -> None:
                cluster["maintenancePolicy"] = {**policy, "resourceVersion": f"rv-{next(self._ids)}"}

            return self._start(key, "SET_MAINTENANCE_POLICY", target, set_policy, host)
        if method == "POST" and verb == "setResourceLabels":
            if body.get("labelFingerprint") != cluster["labelFingerprint"]:
                raise _GoogleError(409, "Labels fingerprint mismatch.", status_name="ABORTED")

            def set_labels() -> None:
                cluster["resourceLabels"] = body.get("resourceLabels") or {}
                cluster["labelFingerprint"] = f"fp-{next(self._ids)}"

            return self._start(key, "SET_LABELS", target, set_labels, host)
        raise _GoogleError(404, f"no such method {method} {target}:{verb}")

    @staticmethod
    def _running(resource: dict[str, Any]) -> None:
        resource["status"] = "RUNNING"

    def _master_upgrade(self, cluster: dict[str, Any], desired: str | None) -> str | None:
        """The master version an update moves to; GKE refuses a downgrade or a skipped minor."""
        if desired is None:
            return None
        current = cluster["currentMasterVersion"]
        version = cluster["currentMasterVersion"] if desired == "-" else self._offers(desired)
        have, want = _minor(current), _minor(version)
        if want < have:
            raise _GoogleError(
                _INVALID, f"Master cannot be downgraded from {current} to {version}: downgrades are not supported."
            )
        if want[0] != have[0] or want[1] > have[1] + 1:
            raise _GoogleError(
                _INVALID,
                f"Master cannot be upgraded from {current} to {version}: upgrade one minor version at a time "
                f"(next: {_text_minor((have[0], have[1] + 1))}).",
            )
        return version

    @staticmethod
    def _check_networks(config: dict[str, Any]) -> None:
        blocks = config.get("cidrBlocks") or []
        if len(blocks) > 50:
            raise _GoogleError(_INVALID, "Master authorized networks: at most 50 CIDR blocks are allowed.")
        for block in blocks:
            try:
                ipaddress.ip_network(block.get("cidrBlock", ""), strict=True)
            except ValueError:
                raise _GoogleError(
                    _INVALID, f"Invalid master authorized networks CIDR block {block.get('cidrBlock')!r}."
                ) from None

    @staticmethod
    def _check_policy(cluster: dict[str, Any], policy: dict[str, Any]) -> None:
        live = (cluster.get("maintenancePolicy") or {}).get("resourceVersion")
        if live and policy.get("resourceVersion") != live:
            raise _GoogleError(409, "Maintenance policy resource version mismatch.", status_name="ABORTED")
        recurring = (policy.get("window") or {}).get("recurringWindow")
        if recurring:
            window = recurring.get("window") or {}
            seconds = _duration_seconds(window["startTime"], window["endTime"])
            if seconds < 4 * 3600:
                raise _GoogleError(
                    _INVALID,
                    "Maintenance policy would not allow for enough availability: windows must be at least 4 "
                    "contiguous hours and allow 48 hours of maintenance in any 32 days.",
                )
            if not str(recurring.get("recurrence", "")).startswith("FREQ="):
                raise _GoogleError(_INVALID, f"Invalid recurrence {recurring.get('recurrence')!r}.")

    def _create_pool(self, key: tuple[str, str, str], spec: dict[str, Any], host: str) -> Response:
        cluster = self._cluster_or_404(key)
        target = f"projects/{key[0]}/locations/{key[1]}/clusters/{key[2]}/nodePools/{spec['name']}"
        if any(p["name"] == spec["name"] for p in cluster["nodePools"]):
            raise _GoogleError(409, f"Already exists: {target}.")
        self._busy(key)
        pool = self._pool_json(key, spec, cluster["currentMasterVersion"], "PROVISIONING")
        cluster["nodePools"].append(pool)

        def ready() -> None:
            pool["status"] = "RUNNING"

        def failed(message: str) -> None:
            pool["status"] = "ERROR"
            pool["statusMessage"] = message

        return self._start(key, "CREATE_NODE_POOL", target, ready, host, failed)

    def _pool_call(
        self, method: str, key: tuple[str, str, str], name: str, verb: str | None, body: dict[str, Any], host: str
    ) -> Response:
        cluster = self._cluster_or_404(key)
        pool = next((p for p in cluster["nodePools"] if p["name"] == name), None)
        target = f"projects/{key[0]}/locations/{key[1]}/clusters/{key[2]}/nodePools/{name}"
        if pool is None:
            raise _GoogleError(404, f"Not found: {target}.")
        if method == "GET":
            return JSONResponse(pool)
        self._busy(key)
        previous = pool["status"]

        def restore(_: str) -> None:
            pool["status"] = previous

        if method == "DELETE":
            pool["status"] = "STOPPING"

            def delete() -> None:
                cluster["nodePools"].remove(pool)

            return self._start(key, "DELETE_NODE_POOL", target, delete, host, restore)
        if method == "PUT":
            version = None
            if body.get("nodeVersion"):
                master = cluster["currentMasterVersion"]
                version = master if body["nodeVersion"] == "-" else self._offers(body["nodeVersion"])
                self._not_newer(name, version, master)
            pool["status"] = "RECONCILING"

            def upgrade() -> None:
                pool["status"] = "RUNNING"
                if version is not None:
                    pool["version"] = version
                if body.get("machineType"):
                    pool.setdefault("config", {})["machineType"] = body["machineType"]

            return self._start(key, "UPGRADE_NODES", target, upgrade, host, restore)
        if method == "POST" and verb == "setSize":
            pool["status"] = "RECONCILING"

            def resize() -> None:
                pool["status"] = "RUNNING"
                pool["initialNodeCount"] = int(body.get("nodeCount", 0))

            return self._start(key, "SET_NODE_POOL_SIZE", target, resize, host, restore)
        if method == "POST" and verb == "setAutoscaling":
            problem = _autoscaling_problem(body.get("autoscaling"))
            if problem:
                raise _GoogleError(_INVALID, f"Node pool {name}: {problem}")
            pool["status"] = "RECONCILING"

            def autoscale() -> None:
                pool["status"] = "RUNNING"
                pool["autoscaling"] = body.get("autoscaling") or {}

            return self._start(key, "UPDATE_CLUSTER", target, autoscale, host, restore)
        raise _GoogleError(404, f"no such method {method} {target}:{verb}")

    def _op_status(self, op: FakeOperation) -> str:
        if op.applied:
            return "DONE"
        age = time.monotonic() - op.started
        if age < self.pending_seconds:
            return "PENDING"
        if op.held or age < self.pending_seconds + self.running_seconds:
            return "RUNNING"
        return "DONE"

    def _tick(self) -> None:
        for op in self.operations.values():
            if not op.applied and self._op_status(op) == "DONE":
                op.applied = True
                if op.error is None:
                    op.apply()
                elif op.on_error is not None:
                    op.on_error(op.error[1])

    @staticmethod
    def _error(status: int, message: str, reason: str | None = None, grpc_status: str | None = None) -> Response:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": grpc_status or _STATUS.get(status, "UNKNOWN"),
        }
        if reason:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": "container.googleapis.com",
                }
            ]
        return JSONResponse({"error": error}, status_code=status)


def _claims(token: str) -> dict[str, Any] | None:
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError):
        return None


class _GoogleError(Exception):
    def __init__(self, status: int, message: str, reason: str | None = None, *, status_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.status_name = status_name
