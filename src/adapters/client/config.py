"""Where the client connects and how it retries: arguments, else the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from importlib import metadata

from compute_worker.adapters.client.protocol import RetryPolicy

URL_ENV = "COMPUTE_WORKER_URL"
KEY_ENV = "COMPUTE_WORKER_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"  # where `make run` listens


@dataclass(frozen=True)
class ClientConfig:
    url: str
    api_key: str | None
    timeout: float
    policy: RetryPolicy

    @classmethod
    def resolve(
        cls, url: str | None, api_key: str | None, timeout: float, retries: int
    ) -> ClientConfig:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        found_url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        key = api_key if api_key is not None else os.environ.get(KEY_ENV) or None
        return cls(found_url.rstrip("/"), key, timeout, RetryPolicy(retries=retries))


@cache
def user_agent() -> str:
    try:
        version = metadata.version("workflow-compute-worker")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"compute-worker-client/{version}"
