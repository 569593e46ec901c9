"""Kubernetes API errors as types, one class per meaning, after kopf's own client errors.

Callers branch on the class (or `status`), never on the text of a message. Each error keeps what
the API server said: the HTTP status, the Status object's `reason`, `message` and `details`.
`transient` says whether the same request may succeed later without anything changing on our side:
no answer at all (transport), a server error (5xx), throttling (429), or a conflict with a
concurrent writer (409: the next pass reads the newer object).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """A request the API server answered with an error, or did not answer at all (`status` 0)."""

    transient = False

    def __init__(self, status: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details: Mapping[str, Any] = details or {}


class ApiTransportError(ApiError):
    """No answer: connection refused or reset, TLS, timeout. Worth a retry."""

    transient = True

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(0, reason, message)


class ApiServerError(ApiError):
    """5xx: the API server (or etcd behind it) failed; worth a retry."""

    transient = True


class ApiTooManyRequests(ApiError):
    """429: throttled (API priority and fairness); worth a retry."""

    transient = True


class ApiConflict(ApiError):
    """409: someone else wrote first (a stale resourceVersion), or the object already exists."""

    transient = True


class ApiNotFound(ApiError):
    """404: the object (or its whole resource type) does not exist."""


class ApiForbidden(ApiError):
    """403: RBAC (or an admission policy) refuses the request."""


class ApiUnauthorized(ApiError):
    """401: the credentials are not accepted."""


class ApiInvalid(ApiError):
    """422: the object fails validation; `details.causes` says which fields."""


class ApiBadRequest(ApiError):
    """400: a malformed request."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: ApiBadRequest,
    401: ApiUnauthorized,
    403: ApiForbidden,
    404: ApiNotFound,
    409: ApiConflict,
    422: ApiInvalid,
    429: ApiTooManyRequests,
}


def api_error(status: int, reason: str, data: Any) -> ApiError:
    """The typed error for an HTTP error answer; `data` is the body (a Status object, usually)."""
    message, details = "", None
    try:
        status_object = json.loads(data)
        message = status_object.get("message", "")
        details = status_object.get("details")
    except (TypeError, ValueError, AttributeError):
        message = data.decode(errors="replace") if isinstance(data, bytes) else str(data or "")
    cls = _BY_STATUS.get(status) or (ApiServerError if status >= 500 else ApiError)
    return cls(status, reason, message, details if isinstance(details, Mapping) else None)
