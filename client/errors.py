"""The API's errors as exceptions: one class per `error.code`, each carrying the code, the message
and the field details the server gave, so a caller catches what it can handle and prints the rest
as the API said it."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer: `{"error": {"code", "message", "details"}}`."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.details = details or []


class Malformed(ApiError):
    """400: the body was not valid JSON."""


class Unauthorized(ApiError):
    """401: no token, or an unknown or revoked one."""


class Forbidden(ApiError):
    """403: the token's role may not do this."""


class NotFound(ApiError):
    """404: unknown run, checkpoint, token or webhook."""


class Conflict(ApiError):
    """409: the request makes no sense for the run's state; the message says why."""


class LeaseLost(Conflict):
    """409 stale_lease: the server fenced this worker off the run; stop touching it at once."""


class ValidationFailed(ApiError):
    """422: `details` holds one `{path, message}` per problem."""


class Unreachable(ConnectionError):
    """The server did not answer (connection refused, timeouts, 5xx) for as long as the client retries."""


BY_CODE: dict[str, type[ApiError]] = {
    "malformed": Malformed, "unauthorized": Unauthorized, "forbidden": Forbidden, "not_found": NotFound,
    "conflict": Conflict, "stale_lease": LeaseLost, "validation_error": ValidationFailed,
}


def from_answer(status: int, body: Any) -> ApiError:
    """The exception for an error answer; a body not in the API's shape keeps its text as the message."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ApiError(status, "http_error", str(body)[:500] or f"HTTP {status}")
    code = str(error.get("code", "http_error"))
    return BY_CODE.get(code, ApiError)(status, code, str(error.get("message", "")), error.get("details") or [])
