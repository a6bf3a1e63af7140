"""ARM's failures mapped onto our codes, once: quota, authorization and invalid requests are
permanent (with a remedy); throttling, 5xx and a busy resource (409 OperationNotAllowed while
another operation runs) retry. A long-running operation that ended Failed is reported as such.
"""

from __future__ import annotations

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.contracts.operations import ErrorCode


def classify_azure_error(err: Exception, what: str) -> ProviderError:
    if isinstance(err, ClientAuthenticationError):
        return ProviderError(
            ErrorCode.CLOUD_AUTH_FAILED,
            f"{what}: {err.message}. Remedy: reconnect the Azure subscription (POST /v1/cloud-accounts/azure) "
            "or fix the service principal",
            retryable=False,
        )
    if isinstance(err, ServiceRequestError):
        return ProviderError(ErrorCode.CLOUD_UNAVAILABLE, f"{what}: {err}", retryable=True)
    if not isinstance(err, HttpResponseError):
        return ProviderError(ErrorCode.PHASE_FAILED, f"{what}: {err}", retryable=True)
    status = err.status_code or 0
    code = (err.error.code if err.error else None) or ""
    message = (err.error.message if err.error else None) or err.reason or str(err)
    text = f"{what}: {code or status}: {message}"
    if "quota" in code.lower() or (code == "OperationNotAllowed" and "quota" in message.lower()):
        return ProviderError(
            ErrorCode.QUOTA_EXCEEDED,
            f"{text}. Remedy: request a vCPU quota increase for the VM family in this region "
            "(Azure portal > Quotas) or choose other VM sizes",
            retryable=False,
        )
    if status == 401:
        return ProviderError(ErrorCode.CLOUD_AUTH_FAILED, text, retryable=False)
    if status == 403 or code in ("AuthorizationFailed", "LinkedAuthorizationFailed"):
        return ProviderError(
            ErrorCode.PERMISSION_DENIED,
            f"{text}. Remedy: assign the service principal the Azure Kubernetes Service Contributor role "
            "on the resource group",
            retryable=False,
        )
    if status == 429:
        return ProviderError(ErrorCode.CLOUD_THROTTLED, text, retryable=True)
    if status == 409 and code in ("OperationNotAllowed", "AnotherOperationInProgress", "EtagMismatch"):
        return ProviderError(ErrorCode.CLOUD_BUSY, text, retryable=True)
    if status in (409, 412):  # 412: a conditional create (If-None-Match: *) found the name taken
        return ProviderError(ErrorCode.CLOUD_CONFLICT, text, retryable=False)
    if status == 404:
        return ProviderError(ErrorCode.CLOUD_NOT_FOUND, text, retryable=False)
    if status >= 500 or code in ("InternalServerError", "RetryableError"):
        return ProviderError(ErrorCode.CLOUD_UNAVAILABLE, text, retryable=True)
    if status == 200:  # a long-running operation that ended Failed
        return ProviderError(ErrorCode.CLOUD_OPERATION_FAILED, text, retryable=False)
    return ProviderError(ErrorCode.CLOUD_REJECTED, text, retryable=False)
