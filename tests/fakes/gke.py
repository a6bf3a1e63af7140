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

Tests steer it with `fail_next` (an HTTP error for matching requests) and `fail_operation` (an
operation that ends DONE with an error, as GKE reports quota shortfalls found while creating).
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
_POOLS = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)/nodePools$")
_POOL = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)/nodePools/([^/:]+)(?::(\w+))?$")
_STS = "/v1/token"
_GENERATE = re.compile(r"^/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken$")
_OPERATION = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/operations/([^/:]+)$")

FAKE_CA_DATA = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nZmFrZSBHS0UgY2x1c3RlciBDQQ==\n-----END CERTIFICATE-----\n"
).decode()
PATCHES = {"1.29": "1.29.15-gke.1000", "1.30": "1.30.12-gke.1200", "1.31": "1.31.8-gke.1100"}
PATCHES |= {"1.32": "1.32.4-gke.1400", "1.33": "1.33.1-gke.1300"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _full_version(version: str | None, default: str = "1.32") -> str:
    if not version or version in ("latest", "-"):
        version = default
    minor = ".".join(version.split(".")[:2])
    return PATCHES.get(minor, version) if version.count(".") == 1 else version


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

    def _route(self, method: str, path: str, body: dict[str, Any], host: str) -> Response:
        if match := _OPERATION.match(path):
            op = self.operations.get(match.group(3))
            if op is None or method != "GET":
                raise _GoogleError(404, f"Operation {match.group(3)} not found.")
            return JSONResponse(op.to_json(self._op_status(op), host))
        if (match := _CLUSTERS.match(path)) and method == "POST":
            return self._create_cluster(match.group(1), match.group(2), body["cluster"], host)
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
        self, key: tuple[str, str, str], op_type: str, target: str, apply: Callable[[], None], host: str
    ) -> Response:
        name = f"operation-{next(self._ids)}-{int(time.time())}"
        error = self._operation_errors.pop(op_type, None)
        op = FakeOperation(name, key[0], key[1], op_type, target, key, time.monotonic(), apply, error)
        self.operations[name] = op
        return JSONResponse(op.to_json("PENDING", host))

    def _create_cluster(self, project: str, location: str, spec: dict[str, Any], host: str) -> Response:
        key = (project, location, spec["name"])
        if key in self.clusters:
            raise _GoogleError(409, f"Already exists: projects/{project}/locations/{location}/clusters/{spec['name']}.")
        version = _full_version(spec.get("initialClusterVersion"))
        pools = []
        for pool in spec.get("nodePools") or []:
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
            # base64 of the cluster CA's PEM, as GKE reports it once the control plane runs
            cluster["masterAuth"] = {"clusterCaCertificate": FAKE_CA_DATA}
            for pool in cluster["nodePools"]:
                pool["status"] = "RUNNING"

        target = f"projects/{project}/locations/{location}/clusters/{spec['name']}"
        return self._start(key, "CREATE_CLUSTER", target, apply, host)

    def _pool_json(self, key: tuple[str, str, str], pool: dict[str, Any], version: str, status: str) -> dict[str, Any]:
        return {
            **pool,
            "status": status,
            "version": _full_version(pool.get("version"), version),
            "selfLink": f"projects/{key[0]}/locations/{key[1]}/clusters/{key[2]}/nodePools/{pool['name']}",
        }

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
            cluster["status"] = "RECONCILING"

            def apply_update() -> None:
                cluster["status"] = "RUNNING"
                if "desiredMasterVersion" in update:
                    cluster["currentMasterVersion"] = _full_version(update["desiredMasterVersion"])
                if "desiredReleaseChannel" in update:
                    cluster["releaseChannel"] = update["desiredReleaseChannel"]

            op_type = "UPGRADE_MASTER" if "desiredMasterVersion" in update else "UPDATE_CLUSTER"
            return self._start(key, op_type, target, apply_update, host)
        if method == "POST" and verb == "setMaintenancePolicy":

            def set_policy() -> None:
                cluster["maintenancePolicy"] = body.get("maintenancePolicy") or {}

            return self._start(key, "SET_MAINTENANCE_POLICY", target, set_policy, host)
        if method == "POST" and verb == "setResourceLabels":
            if body.get("labelFingerprint") != cluster["labelFingerprint"]:
                raise _GoogleError(409, "Labels fingerprint mismatch.", status_name="ABORTED")

            def set_labels() -> None:
                cluster["resourceLabels"] = body.get("resourceLabels") or {}
                cluster["labelFingerprint"] = f"fp-{next(self._ids)}"

            return self._start(key, "SET_LABELS", target, set_labels, host)
        raise _GoogleError(404, f"no such method {method} {target}:{verb}")

    def _create_pool(self, key: tuple[str, str, str], spec: dict[str, Any], host: str) -> Response:
        cluster = self._cluster_or_404(key)
        if any(p["name"] == spec["name"] for p in cluster["nodePools"]):
            raise _GoogleError(409, f"Already exists: node pool {spec['name']}.")
        self._busy(key)
        pool = self._pool_json(key, spec, cluster["currentMasterVersion"], "PROVISIONING")
        cluster["nodePools"].append(pool)

        def ready() -> None:
            pool["status"] = "RUNNING"

        target = f"projects/{key[0]}/locations/{key[1]}/clusters/{key[2]}/nodePools/{spec['name']}"
        return self._start(key, "CREATE_NODE_POOL", target, ready, host)

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
        if method == "DELETE":
            pool["status"] = "STOPPING"

            def delete() -> None:
                cluster["nodePools"].remove(pool)

            return self._start(key, "DELETE_NODE_POOL", target, delete, host)
        if method == "PUT":

            def upgrade() -> None:
                if body.get("nodeVersion"):
                    pool["version"] = _full_version(body["nodeVersion"])
                if body.get("machineType"):
                    pool.setdefault("config", {})["machineType"] = body["machineType"]

            return self._start(key, "UPGRADE_NODES", target, upgrade, host)
        if method == "POST" and verb == "setSize":

            def resize() -> None:
                pool["initialNodeCount"] = int(body.get("nodeCount", 0))

            return self._start(key, "SET_NODE_POOL_SIZE", target, resize, host)
        if method == "POST" and verb == "setAutoscaling":

            def autoscale() -> None:
                pool["autoscaling"] = body.get("autoscaling") or {}

            return self._start(key, "SET_NODE_POOL_MANAGEMENT", target, autoscale, host)
        raise _GoogleError(404, f"no such method {method} {target}:{verb}")

    def _op_status(self, op: FakeOperation) -> str:
        age = time.monotonic() - op.started
        if age < self.pending_seconds:
            return "PENDING"
        if age < self.pending_seconds + self.running_seconds:
            return "RUNNING"
        return "DONE"

    def _tick(self) -> None:
        for op in self.operations.values():
            if not op.applied and self._op_status(op) == "DONE":
                op.applied = True
                if op.error is None:
                    op.apply()
                elif op.operation_type == "CREATE_CLUSTER":
                    cluster = self.clusters.get(op.cluster_key)
                    if cluster is not None:
                        cluster["status"] = "ERROR"
                        cluster["statusMessage"] = op.error[1]

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
