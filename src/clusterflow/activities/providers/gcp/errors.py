"""GKE's failures mapped onto our codes, once: quota, permission, authentication and invalid
requests are permanent (with a remedy in the message); throttling, 5xx and a busy cluster
(FAILED_PRECONDITION: another operation is running) are retryable.

Two sources: errors of an API call (`classify_google_error`) and a long-running `Operation` that
ended with an error (`classify_operation_error`, by its RPC code).
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc

from clusterflow.activities.providers.phases import ProviderError
from clusterflow.contracts.operations import ErrorCode

_RPC_RESOURCE_EXHAUSTED, _RPC_PERMISSION_DENIED, _RPC_UNAVAILABLE, _RPC_INTERNAL = 8, 7, 14, 13
_RPC_DEADLINE_EXCEEDED, _RPC_ABORTED = 4, 10


def _error_body(err: gexc.GoogleAPICallError) -> dict[str, Any]:
    """Google's error JSON (`status` such as FAILED_PRECONDITION, the bare message), which
    api_core folds into its own message."""
    try:
        payload = err.response.json() if err.response is not None else {}
        return dict(payload.get("error") or {})
    except (ValueError, AttributeError):
        return {}


def classify_google_error(err: gexc.GoogleAPICallError, what: str) -> ProviderError:
    status = err.code or 0
    body = _error_body(err)
    message = str(body.get("message") or err.message or err)
    reason = (err.reason or "").upper()
    text = f"{what}: {message}"
    if "QUOTA" in reason or (status in (403, 429) and "quota" in message.lower()):
        return ProviderError(
            ErrorCode.QUOTA_EXCEEDED,
            f"{text}. Remedy: request a quota increase in the GCP console (IAM & Admin > Quotas) or choose "
            "smaller machine types or fewer nodes",
            retryable=False,
        )
    if status == 429:
        return ProviderError(ErrorCode.CLOUD_THROTTLED, text, retryable=True)
    if status == 401:
        return ProviderError(
            ErrorCode.CLOUD_AUTH_FAILED,
            f"{text}. Remedy: reconnect the GCP account (POST /v1/cloud-accounts/gcp) or fix the credentials",
            retryable=False,
        )
    if status == 403:
        return ProviderError(
            ErrorCode.PERMISSION_DENIED,
            f"{text}. Remedy: grant the service account roles/container.admin and roles/iam.serviceAccountUser "
            "on the project",
            retryable=False,
        )
    if status == 400 and body.get("status") == "FAILED_PRECONDITION":
        return ProviderError(ErrorCode.CLOUD_BUSY, text, retryable=True)
    if status == 409:
        return ProviderError(ErrorCode.CLOUD_CONFLICT, text, retryable=False)
    if status == 404:
        return ProviderError(ErrorCode.CLOUD_NOT_FOUND, text, retryable=False)
    if status >= 500 or status in (408,):
        return ProviderError(ErrorCode.CLOUD_UNAVAILABLE, text, retryable=True)
    return ProviderError(ErrorCode.CLOUD_REJECTED, text, retryable=False)


def classify_operation_error(code: int, message: str, what: str) -> ProviderError:
    text = f"{what} failed in GKE: {message}"
    if code == _RPC_RESOURCE_EXHAUSTED or "quota" in message.lower():
        return ProviderError(
            ErrorCode.QUOTA_EXCEEDED,
            f"{text}. Remedy: request a quota increase in the GCP console (IAM & Admin > Quotas) or choose "
            "smaller machine types or fewer nodes",
            retryable=False,
        )
    if code == _RPC_PERMISSION_DENIED:
        return ProviderError(ErrorCode.PERMISSION_DENIED, text, retryable=False)
    if code in (_RPC_UNAVAILABLE, _RPC_INTERNAL, _RPC_DEADLINE_EXCEEDED, _RPC_ABORTED):
        return ProviderError(ErrorCode.CLOUD_UNAVAILABLE, text, retryable=True)
    return ProviderError(ErrorCode.CLOUD_OPERATION_FAILED, text, retryable=False)
