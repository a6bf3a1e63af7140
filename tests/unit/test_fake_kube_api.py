"""The fake kube API answers the real `kubernetes` client the way an apiserver would."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.fakes.kube_api import FakeKubeApi, FakeNode


def _api(kube: FakeKubeApi, tmp_path: Path) -> client.ApiClient:
    return config.new_client_from_config(str(kube.write_kubeconfig(tmp_path / "kubeconfig")))


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_real_client_reads_version_nodes_namespaces(tmp_path: Path, tls: bool) -> None:
    nodes = [FakeNode("a", architecture="arm64", region="eu-west-1"), FakeNode("b", architecture="arm64")]
    with FakeKubeApi(tls=tls, nodes=nodes) as kube:
        api = _api(kube, tmp_path)
        assert client.VersionApi(api).get_code().git_version == "v1.31.2"
        core = client.CoreV1Api(api)
        listed = core.list_node()
        assert [n.metadata.name for n in listed.items] == ["a", "b"]
        assert listed.items[0].status.node_info.architecture == "arm64"
        assert listed.items[0].metadata.labels["topology.kubernetes.io/region"] == "eu-west-1"
        assert {n.metadata.name for n in core.list_namespace().items} == {"default", "kube-system"}


def test_secrets_token_requests_and_namespace_deletion(tmp_path: Path) -> None:
    with FakeKubeApi() as kube:
        core = client.CoreV1Api(_api(kube, tmp_path))
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="agent")))
        core.create_namespaced_secret(
            "agent", client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"k": "v1"})
        )
        with pytest.raises(ApiException) as exists:
            core.create_namespaced_secret("agent", client.V1Secret(metadata=client.V1ObjectMeta(name="s")))
        assert exists.value.status == 409
        core.replace_namespaced_secret(
            "s", "agent", client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"k": "v2"})
        )
        assert kube.secret_data("agent", "s") == {"k": "v2"}
        assert core.read_namespaced_secret("s", "agent").data["k"] == "djI="

        token = core.create_namespaced_service_account_token(
            "viewer",
            "agent",
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)),
        )
        assert token.status.token.startswith("fake-sa-token-")
        assert kube.state.issued_tokens[0]["expirationSeconds"] == 600

        core.delete_namespace("agent")
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_secret("s", "agent")
        assert gone.value.status == 404


def test_wrong_bearer_token_is_unauthorized(tmp_path: Path) -> None:
    with FakeKubeApi() as kube:
        kube.token = "other"
        api = config.new_client_from_config(str(FakeKubeApi.write_kubeconfig(kube, tmp_path / "k")))
        kube.token = "expected"
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(api).list_node()
        assert err.value.status == 401
