"""AWS errors are classified in one place: throttling and 5xx retry; access denied, quota and
invalid parameters are permanent and say what to do about them.

Every boto3 call goes through `clients.aws_call`, which raises what `classify` returns, so the
phases never inspect botocore exceptions themselves.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.contracts.cloud_accounts import CloudErrorCode

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
}
_UNAVAILABLE = {"InternalError", "InternalFailure", "ServiceUnavailable", "ServerException", "InternalServerError"}
_ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "AuthFailure",
    "NotAuthorized",
    "SignatureDoesNotMatch",
}
# Expired temporary credentials heal on retry: each attempt assumes the role afresh.
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
_CONFLICT = {"ResourceInUseException", "DependencyViolation", "IncorrectState", "ConcurrentModification"}


def _is_quota(code: str) -> bool:
    return (
        code.endswith("LimitExceeded")
        or code.endswith("LimitExceededException")
        or code
        in {
            "ServiceQuotaExceededException",
            "ResourceLimitExceeded",
            "QuotaExceededException",
            "InsufficientCapacity",
        }
    )


def _is_invalid(code: str) -> bool:
    return (
        code.startswith("Invalid")
        or code.startswith("Malformed")
        or code in {"ValidationError", "ValidationException", "UnsupportedAvailabilityZoneException", "Unsupported"}
    )


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def classify(err: Exception, operation: str, role: str | None = None, region: str | None = None) -> ProviderError:
    """The one mapping of AWS failures onto our codes, retryability and remedies."""
    if not isinstance(err, ClientError):
        return ProviderError(
            CloudErrorCode.CLOUD_UNAVAILABLE, f"{operation}: AWS could not be reached ({err})", retryable=True
        )
    code = error_code(err)
    message = str(err.response.get("Error", {}).get("Message", "")) or code
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    where = f" in {region}" if region else ""
    if code in _THROTTLING:
        return ProviderError(CloudErrorCode.CLOUD_THROTTLED, f"{operation} throttled by AWS: {message}", retryable=True)
    if code in _EXPIRED:
        return ProviderError(
            CloudErrorCode.CLOUD_ERROR, f"{operation}: credentials expired ({message})", retryable=True
        )
    if code in _ACCESS_DENIED:
        if role is None:
            remedy = "grant the platform's own AWS credentials this action (control-plane configuration)."
        else:
            remedy = (
                "reconnect the account with level 'manage' (POST /v1/cloud-accounts/aws with forceUpdate=true) "
                "and update the CloudFormation stack with the new template, or grant the role this action."
            )
        who = f"role {role}" if role else "the platform's credentials"
        return ProviderError(
            CloudErrorCode.CLOUD_ACCESS_DENIED,
            f"{operation} was denied for {who}: {message}. Remedy: {remedy}",
            retryable=False,
        )
    if _is_quota(code):
        return ProviderError(
            CloudErrorCode.CLOUD_QUOTA_EXCEEDED,
            f"{operation} exceeded an AWS quota{where} ({code}): {message}. Remedy: request an increase in "
            "Service Quotas for this account and region, or delete unused resources, then retry the operation.",
            retryable=False,
        )
    if _is_invalid(code):
        return ProviderError(
            CloudErrorCode.CLOUD_INVALID_PARAMETER,
            f"{operation} rejected a parameter ({code}): {message}. Remedy: correct the cluster document "
            "(provisioner.eks, machine types, versions) and submit it again.",
            retryable=False,
        )
    if code in _UNAVAILABLE or status >= 500:
        return ProviderError(
            CloudErrorCode.CLOUD_UNAVAILABLE, f"{operation}: AWS failed ({code or status}): {message}", retryable=True
        )
    if code in _CONFLICT:
        return ProviderError(CloudErrorCode.CLOUD_ERROR, f"{operation}: {code}: {message}", retryable=True)
    return ProviderError(
        CloudErrorCode.CLOUD_ERROR, f"{operation} failed ({code or status}): {message}", retryable=True
    )
