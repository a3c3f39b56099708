"""The client's errors, mapped once from an answer's status and ``code``.

Every error carries ``status`` (None when no answer came), ``code``, ``message``,
``details`` and the ``correlation_id`` of the request, so that it can be found in
the server's logs and audit rows (``compute-worker audit --correlation-id``).
"""

from __future__ import annotations

from typing import Any


class ComputeClientError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}
        self.correlation_id = correlation_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" [{self.status} {self.code}]" if self.status is not None else ""
        return f"{self.message}{where} (correlation id {self.correlation_id})"


class ComputeConnectionError(ComputeClientError, ConnectionError):
    """No answer: the server could not be reached, or the connection broke."""


class ResponseError(ComputeClientError):
    """An answer the client cannot read (not the server's JSON shapes)."""


class AuthenticationError(ComputeClientError):
    """401: a missing, unknown, revoked or expired key (or a bad webhook signature)."""


class PermissionDeniedError(ComputeClientError):
    """403: the key lacks ``details["requiredScope"]``, or HTTPS is required."""


class NotFoundError(ComputeClientError):
    """404."""


class RunNotFoundError(NotFoundError):
    pass


class DeploymentNotFoundError(NotFoundError):
    pass


class WorkflowNotFoundError(NotFoundError):
    """The deployment has no such workflow; ``details["workflows"]`` lists its own."""


class HookNotFoundError(NotFoundError):
    pass


class StreamNotFoundError(NotFoundError):
    pass


class NoActiveDeploymentError(NotFoundError):
    """No deployment is active: ``deployments.active()`` (404) and triggering without a
    ``deployment_id`` (409) both raise it."""


class ConflictError(ComputeClientError):
    """409."""


class IdempotencyComputeClientError(ConflictError):
    """409 ``idempotency_conflict``: the key was used with another payload."""


class RunAlreadyTerminalError(ConflictError):
    pass


class ValidationError(ComputeClientError):
    """400 or 422: the request was refused as it is; ``details`` says where."""


class InvalidDeploymentError(ValidationError):
    """422 ``invalid_deployment``: the bundle does not load (the loader's message)."""


class PayloadTooLargeError(ValidationError):
    """413."""


class RateLimitedError(ComputeClientError):
    """429; ``retry_after`` seconds until the next window."""


class ServerError(ComputeClientError):
    """5xx."""


class StorageUnavailableError(ServerError):
    """503 ``storage_unavailable``: safe to retry after ``retry_after``."""


class RunTimeoutError(ComputeClientError, TimeoutError):
    """``wait`` gave up: the run (``run``, as last seen) is not over yet."""

    def __init__(self, message: str, *, run: Any, correlation_id: str | None = None) -> None:
        super().__init__(message, code="wait_timeout", correlation_id=correlation_id)
        self.run = run


BY_CODE: dict[str, type[ComputeClientError]] = {
    "idempotency_conflict": IdempotencyComputeClientError,
    "no_active_deployment": NoActiveDeploymentError,
    "run_not_found": RunNotFoundError,
    "deployment_not_found": DeploymentNotFoundError,
    "workflow_not_found": WorkflowNotFoundError,
    "hook_not_found": HookNotFoundError,
    "stream_not_found": StreamNotFoundError,
    "run_already_terminal": RunAlreadyTerminalError,
    "invalid_deployment": InvalidDeploymentError,
    "payload_too_large": PayloadTooLargeError,
    "rate_limited": RateLimitedError,
    "storage_unavailable": StorageUnavailableError,
}
BY_STATUS: dict[int, type[ComputeClientError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
}


def error_class(status: int, code: str | None) -> type[ComputeClientError]:
    """The code decides when it is known; else the status; 5xx are server errors."""
    found = BY_CODE.get(code or "")
    if found is not None:
        return found
    if status >= 500:
        return ServerError
    return BY_STATUS.get(status, ComputeClientError)
