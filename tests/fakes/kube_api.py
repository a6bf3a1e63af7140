"""A fake Kubernetes API server that speaks the wire format the real `kubernetes` client reads.

No kube-apiserver is installable here, so the agent's tests run it against this: a threaded
HTTP server on a free port (optionally TLS with a self-signed certificate), in-process, serving
the few resources the agent touches, each as the apiserver shapes it (kind/apiVersion, list
metadata, `Status` objects for errors) so that the client's deserializers and
`client_side_validation` accept them:

- `GET /version`, `GET /api/v1/nodes`
- namespaces: list, get, create, delete
- secrets in a namespace: list, get, create, replace, delete
- `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token` (TokenRequest)
- `DELETE` of cluster roles and cluster role bindings (recorded only)

Every request needs `Authorization: Bearer <token>` (401 `Status` otherwise), and every
request is recorded so tests can assert what the agent did in the cluster.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import secrets
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class FakeNode:
    name: str
    architecture: str = "amd64"
    kubelet_version: str = "v1.31.2"
    region: str | None = None
    ready: bool = True


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any = None


@dataclass
class KubeState:
    git_version: str = "v1.31.2"
    nodes: list[FakeNode] = field(default_factory=list)
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    issued_tokens: list[dict[str, Any]] = field(default_factory=list)
    # Cluster roles and bindings are not stored: the agent only ever deletes its own.
    deleted_cluster_objects: set[tuple[str, str]] = field(default_factory=set)
    requests: list[RecordedRequest] = field(default_factory=list)


class FakeKubeApi:
    """Start with `with FakeKubeApi() as kube:`; `kube.write_kubeconfig(path)` for a client."""

    def __init__(self, *, token: str | None = None, tls: bool = False, nodes: list[FakeNode] | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.tls = tls
        self.state = KubeState(nodes=nodes if nodes is not None else [FakeNode("node-1"), FakeNode("node-2")])
        for name in ("default", "kube-system"):
            self._add_namespace(name)
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-kube-")
        self.ca_file: Path | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeKubeApi:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"kube": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if self.tls:
            cert, key = _self_signed(Path(self._tmp.name))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.ca_file = cert
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._tmp.cleanup()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_file is not None:
            cluster["certificate-authority"] = str(self.ca_file)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "agent", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent", "namespace": namespace}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- state helpers for tests -----------------------------------------------------------

    def _add_namespace(self, name: str) -> dict[str, Any]:
        ns = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": "1", "creationTimestamp": _now()},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        self.state.namespaces[name] = ns
        return ns

    def add_namespace(self, name: str) -> None:
        with self.lock:
            self._add_namespace(name)

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        with self.lock:
            secret = self.state.secrets.get((namespace, name))
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def requests_matching(self, method: str, pattern: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.state.requests if r.method == method and re.fullmatch(pattern, r.path)]

    # --- resources, as the apiserver renders them ------------------------------------------

    def version(self) -> dict[str, Any]:
        major, minor = self.state.git_version.lstrip("v").split(".")[:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": self.state.git_version,
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.23.4",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def node(self, node: FakeNode) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/arch": node.architecture,
            "kubernetes.io/os": "linux",
        }
        if node.region:
            labels["topology.kubernetes.io/region"] = node.region
        return {
            "metadata": {"name": node.name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, node.name)), "labels": labels},
            "spec": {},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True" if node.ready else "False", "reason": "KubeletReady"}
                ],
                "nodeInfo": {
                    "architecture": node.architecture,
                    "bootID": "boot",
                    "containerRuntimeVersion": "containerd://1.7.22",
                    "kernelVersion": "6.8.0",
                    "kubeProxyVersion": node.kubelet_version,
                    "kubeletVersion": node.kubelet_version,
                    "machineID": "machine",
                    "operatingSystem": "linux",
                    "osImage": "Ubuntu 24.04",
                    "systemUUID": "system",
                },
            },
        }

    def list_of(self, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKubeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read recorded requests
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        return json.loads(self.rfile.read(length))

    def _handle(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        body = self._body() if method in ("POST", "PUT", "PATCH") else None
        if self.headers.get("Authorization") != f"Bearer {self.kube.token}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        with self.kube.lock:
            self.kube.state.requests.append(RecordedRequest(method, path, body))
            code, response = self._route(method, path, body)
        self._send(code, response)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _route(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        kube, state = self.kube, self.kube.state
        if method == "GET" and path == "/version":
            return 200, kube.version()
        if method == "GET" and path == "/api/v1/nodes":
            return 200, kube.list_of("NodeList", [kube.node(n) for n in state.nodes])
        if path == "/api/v1/namespaces":
            if method == "GET":
                return 200, kube.list_of("NamespaceList", list(state.namespaces.values()))
            if method == "POST":
                name = body["metadata"]["name"]
                if name in state.namespaces:
                    return 409, _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
                return 201, kube._add_namespace(name)
        rbac = re.fullmatch(r"/apis/rbac.authorization.k8s.io/v1/(clusterroles|clusterrolebindings)/([^/]+)", path)
        if rbac is not None and method == "DELETE":
            kind, name = rbac.groups()
            if (kind, name) in state.deleted_cluster_objects:
                return 404, _status(404, "NotFound", f'{kind} "{name}" not found')
            state.deleted_cluster_objects.add((kind, name))
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        match = re.fullmatch(r"/api/v1/namespaces/([^/]+)(?:/(secrets|serviceaccounts)(?:/([^/]+))?(/token)?)?", path)
        if match is None:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        namespace, resource, name, subresource = match.groups()
        if resource is None:
            ns = state.namespaces.get(namespace)
            if ns is None:
                return 404, _status(404, "NotFound", f'namespaces "{namespace}" not found')
            if method == "GET":
                return 200, ns
            if method == "DELETE":
                del state.namespaces[namespace]
                for key in [k for k in state.secrets if k[0] == namespace]:
                    del state.secrets[key]
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        if namespace not in state.namespaces:
            return 404, _status(404, "NotFound", f'namespaces "{namespace}" not found')
        if resource == "serviceaccounts" and subresource == "/token" and method == "POST":
            return 201, self._token_request(namespace, name, body)
        if resource == "secrets":
            return self._secret(method, namespace, name, body)
        return 405, _status(405, "MethodNotAllowed", f"{method} is not supported on {path}")

    def _secret(self, method: str, namespace: str, name: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        state = self.kube.state
        if name is None:
            if method == "GET":
                items = [s for (ns, _), s in state.secrets.items() if ns == namespace]
                return 200, self.kube.list_of("SecretList", items)
            if method == "POST":
                name = body["metadata"]["name"]
                if (namespace, name) in state.secrets:
                    return 409, _status(409, "AlreadyExists", f'secrets "{name}" already exists')
                return 201, self._store_secret(namespace, name, body)
        assert name is not None
        existing = state.secrets.get((namespace, name))
        if existing is None:
            return 404, _status(404, "NotFound", f'secrets "{name}" not found')
        if method == "GET":
            return 200, existing
        if method == "PUT":
            return 200, self._store_secret(namespace, name, body)
        if method == "DELETE":
            del state.secrets[(namespace, name)]
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return 405, _status(405, "MethodNotAllowed", f"{method} is not supported on secrets")

    def _store_secret(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        data = dict(body.get("data") or {})
        for key, value in (body.get("stringData") or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        secret = {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(len(self.kube.state.requests))},
            "type": body.get("type", "Opaque"),
            "data": data,
        }
        self.kube.state.secrets[(namespace, name)] = secret
        return secret

    def _token_request(self, namespace: str, name: str | None, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        seconds = int(spec.get("expirationSeconds") or 3600)
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
        token = f"fake-sa-token-{secrets.token_urlsafe(16)}"
        self.kube.state.issued_tokens.append(
            {"namespace": namespace, "serviceAccount": name, "expirationSeconds": seconds, "token": token}
        )
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "audiences": spec.get("audiences") or ["https://kubernetes.default.svc"],
                "expirationSeconds": seconds,
            },
            "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-api")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
