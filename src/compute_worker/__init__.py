"""compute-worker: a durable workflow server for the Workflow Studio.

The public surface::

    from compute_worker import (
        create_compute_worker,          # -> ASGI app (Starlette)
        create_compute_worker_server,   # -> server object, not yet listening
        start_compute_worker_server,    # -> awaits until listening; handle with url, close()
    )

Every option is also an environment variable ``COMPUTE_WORKER_<NAME>`` and a
``compute-worker serve --<name>`` flag; see the README.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from app.server import ComputeWorkerServer, ServerHandle, create_app
from app.settings import Settings

__all__ = [
    "ComputeWorkerServer",
    "ServerHandle",
    "create_compute_worker",
    "create_compute_worker_server",
    "start_compute_worker_server",
]


def create_compute_worker(**options: Any) -> Starlette:
    """The ASGI application; the database opens in its lifespan."""
    return create_app(Settings.load(options))


def create_compute_worker_server(**options: Any) -> ComputeWorkerServer:
    """A hypercorn-backed server object; call ``await server.serve()`` or ``start()``."""
    return ComputeWorkerServer(Settings.load(options))


async def start_compute_worker_server(**options: Any) -> ServerHandle:
    """Start serving in the background; returns once connections are accepted."""
    return await create_compute_worker_server(**options).start()
