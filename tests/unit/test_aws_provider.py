"""The AWS provider's pure parts: EKS tokens and kubeconfig, error classification, sealing."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from clusterflow import sealing
from clusterflow.activities.providers.aws import (
    EKS_TOKEN_PREFIX,
    classify,
    eks_kubeconfig,
    eks_token,
    request_token,
)
from clusterflow.api.schemas.cloud_accounts import duration_seconds


def _sts() -> object:
    session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="eu-west-1")
    return session.client("sts", endpoint_url="https://sts.eu-west-1.amazonaws.com")


def test_eks_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() -> None:
    token = eks_token(_sts(), "prod-1")
    assert token.startswith(EKS_TOKEN_PREFIX)
    encoded = token.removeprefix(EKS_TOKEN_PREFIX)
    assert "=" not in encoded  # base64url without padding, as aws-iam-authenticator expects
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert parsed.scheme == "https"
    assert parsed.hostname == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"]
    assert query["Version"] == ["2011-06-15"]
    assert query["X-Amz-Expires"] == ["60"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    # The header hook is removed again: an ordinary presign of the same client is unbound.
    plain = _sts().generate_presigned_url("get_caller_identity")  # type: ignore[attr-defined]
    assert "x-k8s-aws-id" not in plain


def test_kubeconfig_names_endpoint_ca_and_token() -> None:
    cluster = {
        "name": "prod-1",
        "endpoint": "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
        "certificateAuthority": {"data": "LS0tLS1CRUdJTg=="},
    }
    config = eks_kubeconfig(cluster, "k8s-aws-v1.abc")
    assert config["current-context"] == "prod-1"
    assert config["clusters"][0]["cluster"] == {
        "server": "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
        "certificate-authority-data": "LS0tLS1CRUdJTg==",
    }
    assert config["users"][0]["user"] == {"token": "k8s-aws-v1.abc"}


def _client_error(code: str, status: int, message: str = "boom") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("code", "status", "expected", "retryable"),
    [
        ("ThrottlingException", 400, "CLOUD_THROTTLED", True),
        ("RequestLimitExceeded", 503, "CLOUD_THROTTLED", True),
        ("InternalFailure", 500, "CLOUD_UNAVAILABLE", True),
        ("SomethingNew", 502, "CLOUD_UNAVAILABLE", True),
        ("AccessDeniedException", 403, "CLOUD_ACCESS_DENIED", False),
        ("UnauthorizedOperation", 403, "CLOUD_ACCESS_DENIED", False),
        ("VpcLimitExceeded", 400, "CLOUD_QUOTA_EXCEEDED", False),
        ("ResourceLimitExceededException", 400, "CLOUD_QUOTA_EXCEEDED", False),
        ("InvalidParameterException", 400, "CLOUD_INVALID_PARAMETER", False),
        ("InvalidInstanceType", 400, "CLOUD_INVALID_PARAMETER", False),
        ("ExpiredToken", 403, "CLOUD_ERROR", True),
        ("ResourceInUseException", 409, "CLOUD_ERROR", True),
    ],
)
def test_aws_errors_map_onto_stable_codes(code: str, status: int, expected: str, retryable: bool) -> None:
    error = classify(_client_error(code, status), "CreateCluster", role="arn:aws:iam::1:role/r", region="eu-west-1")
    assert error.code == expected
    assert error.retryable is retryable
    if not retryable:
        assert "Remedy:" in error.message


def test_access_denied_names_the_role_and_the_remedy() -> None:
    error = classify(_client_error("AccessDenied", 403, "not allowed"), "create_cluster", role="arn:aws:iam::1:role/r")
    assert "arn:aws:iam::1:role/r" in error.message
    assert "level 'manage'" in error.message


def test_network_failures_are_retryable() -> None:
    error = classify(EndpointConnectionError(endpoint_url="https://eks"), "describe_cluster")
    assert error.code == "CLOUD_UNAVAILABLE"
    assert error.retryable


def test_request_tokens_are_stable_per_step_and_distinct_across_steps() -> None:
    assert request_token("op_1", "CONTROL_PLANE", "c") == request_token("op_1", "CONTROL_PLANE", "c")
    assert request_token("op_1", "CONTROL_PLANE", "c") != request_token("op_2", "CONTROL_PLANE", "c")
    assert request_token("op_1", "NODE_GROUPS", "a") != request_token("op_1", "NODE_GROUPS", "b")


def test_sealed_box_opens_only_for_its_recipient() -> None:
    recipient, other = sealing.Recipient(), sealing.Recipient()
    sealed = sealing.seal(recipient.public_key, b"secret")
    assert b"secret" not in base64.b64decode(sealed)
    assert recipient.open(sealed) == b"secret"
    with pytest.raises(Exception):  # noqa: B017, PT011 - any failure: the wrong key must not open it
        other.open(sealed)


@pytest.mark.parametrize(
    ("value", "seconds"), [(3_600_000_000_000, 3600), ("1h", 3600), ("1h30m", 5400), ("45s", 45), (None, None)]
)
def test_durations_accept_nanoseconds_and_go_syntax(value: int | str | None, seconds: int | None) -> None:
    assert duration_seconds(value) == seconds
