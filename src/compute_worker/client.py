"""The compute-worker Python client::

    from compute_worker.client import Client

    with Client() as cw:   # COMPUTE_WORKER_URL, COMPUTE_WORKER_API_KEY
        cw.deployments.create("./my_workflows", activate=True)
        run = cw.runs.trigger("checkout", "order-42", wait=True, timeout=60)
        print(run.status, run.output)

``AsyncClient`` has the same methods, awaited. Results are pydantic models; errors
are the subclasses of ``ComputeClientError`` below. See the README's "Python client".
"""

from __future__ import annotations

from compute_worker.adapters.client.aio import AsyncChunkStream, AsyncClient
from compute_worker.adapters.client.bundle import Bundle, bundle_from
from compute_worker.adapters.client.config import DEFAULT_URL, KEY_ENV, URL_ENV
from compute_worker.adapters.client.errors import (
    AuthenticationError,
    ComputeClientError,
    ComputeConnectionError,
    ConflictError,
    DeploymentNotFoundError,
    HookNotFoundError,
    IdempotencyComputeClientError,
    InvalidDeploymentError,
    NoActiveDeploymentError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ResponseError,
    RunAlreadyTerminalError,
    RunNotFoundError,
    RunTimeoutError,
    ServerError,
    StorageUnavailableError,
    StreamNotFoundError,
    ValidationError,
    WorkflowNotFoundError,
)
from compute_worker.adapters.client.models import (
    AppEndpoint,
    ChildRun,
    Deployment,
    Event,
    Health,
    Hook,
    Page,
    Resumed,
    Run,
    RunError,
    RunExecution,
    RunStuck,
    Step,
    StreamInfo,
    TriggeredRun,
    WebhookDelivery,
    WorkflowInfo,
)
from compute_worker.adapters.client.protocol import RetryPolicy
from compute_worker.adapters.client.sync import ChunkStream, Client
from compute_worker.adapters.client.webhooks import signed_headers, webhook_body

__all__ = [
    "DEFAULT_URL",
    "KEY_ENV",
    "URL_ENV",
    "AppEndpoint",
    "AsyncChunkStream",
    "AsyncClient",
    "AuthenticationError",
    "Bundle",
    "ChildRun",
    "ChunkStream",
    "Client",
    "ComputeClientError",
    "ComputeConnectionError",
    "ConflictError",
    "Deployment",
    "DeploymentNotFoundError",
    "Event",
    "Health",
    "Hook",
    "HookNotFoundError",
    "IdempotencyComputeClientError",
    "InvalidDeploymentError",
    "NoActiveDeploymentError",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResponseError",
    "Resumed",
    "RetryPolicy",
    "Run",
    "RunAlreadyTerminalError",
    "RunError",
    "RunExecution",
    "RunNotFoundError",
    "RunStuck",
    "RunTimeoutError",
    "ServerError",
    "Step",
    "StorageUnavailableError",
    "StreamInfo",
    "StreamNotFoundError",
    "TriggeredRun",
    "ValidationError",
    "WebhookDelivery",
    "WorkflowInfo",
    "WorkflowNotFoundError",
    "bundle_from",
    "signed_headers",
    "webhook_body",
]
