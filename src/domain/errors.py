"""Domain errors. Each carries a stable snake_case ``code``; the HTTP edge maps
classes to statuses once (``adapters/http/errors.py``).

``kind`` is the Workflow DevKit error class a runtime dispatches on (world.md
§8.3); it travels as ``name`` on the world lane.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"
    kind: ClassVar[str] = "WorkflowWorldError"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(DomainError):
    code = "invalid_request"


class NotFound(DomainError):
    code = "not_found"


class RunNotFound(NotFound):
    code = "run_not_found"
    kind = "WorkflowRunNotFoundError"


class StepNotFound(NotFound):
    code = "step_not_found"


class WaitNotFound(NotFound):
    code = "wait_not_found"


class EventNotFound(NotFound):
    code = "event_not_found"


class HookNotFound(NotFound):
    code = "hook_not_found"
    kind = "HookNotFoundError"


class StreamNotFound(NotFound):
    code = "stream_not_found"


class DeploymentNotFound(NotFound):
    code = "deployment_not_found"


class NoActiveDeployment(NotFound):
    code = "no_active_deployment"


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class EntityConflict(DomainError):
    code = "entity_conflict"
    kind = "EntityConflictError"


class StreamClosed(EntityConflict):
    code = "stream_closed"


class RunExpired(DomainError):
    code = "run_expired"
    kind = "RunExpiredError"


class TooEarly(DomainError):
    code = "too_early"
    kind = "TooEarlyError"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"retryAfter": retry_after})
        self.retry_after = retry_after


class Throttled(DomainError):
    code = "throttled"
    kind = "ThrottleError"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"retryAfter": retry_after})
        self.retry_after = retry_after


class PreconditionFailed(DomainError):
    """The caller's view of the run is stale (``stateUpdatedAt``): reload and retry."""

    code = "precondition_failed"
    kind = "PreconditionFailedError"


class RunNotSupported(DomainError):
    code = "run_not_supported"
    kind = "RunNotSupportedError"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class StorageUnavailable(DomainError):
    """The database or artifact store cannot be reached; safe to retry."""

    code = "storage_unavailable"


class InvalidDeployment(DomainError):
    """A bundle that cannot become a deployment; the message says why."""

    code = "invalid_deployment"


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"


class RunAlreadyTerminal(DomainError):
    code = "run_already_terminal"


class NoActiveDeploymentToTrigger(DomainError):
    """Triggering without a deploymentId while no deployment is active (409)."""

    code = "no_active_deployment"


class UnknownProvider(NotFound):
    code = "unknown_provider"


class InvalidSignature(DomainError):
    code = "invalid_signature"


class StaleSignature(DomainError):
    code = "stale_signature"


class HttpsRequired(DomainError):
    code = "https_required"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"retryAfter": retry_after})
        self.retry_after = retry_after
