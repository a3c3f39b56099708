"""compute-worker: a durable workflow server for the Workflow Studio.

Authoring workflows::

    from compute_worker import workflow, step, sleep, create_hook, get_writable
    from compute_worker import FatalError, RetryableError, StepFailedError, run_metadata
    from compute_worker import start_workflow  # child = await start_workflow(name, *args)

Serving (options: see the README; each is also ``COMPUTE_WORKER_<NAME>`` and a flag)::

    from compute_worker import (
        create_compute_worker,          # -> ASGI app (Starlette)
        create_compute_worker_server,   # -> server object, not yet listening
        start_compute_worker_server,    # -> awaits until listening; handle with url, close()
        StartupError,                   # what they raise when the server cannot start
        SettingsError,                  # ... because of a bad option (a StartupError)
    )

The server half is imported on first use, so workflow bundles importing the
authoring API stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compute_worker.domain.authoring import (
    FatalError,
    HookConflictError,
    RetryableError,
    StepFailedError,
    create_hook,
    get_writable,
    run_metadata,
    sleep,
    start_workflow,
    step,
    workflow,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from compute_worker.app.errors import SettingsError, StartupError
    from compute_worker.app.server import ComputeWorkerServer, ServerHandle

__all__ = [
    "FatalError",
    "HookConflictError",
    "RetryableError",
    "SettingsError",
    "StartupError",
    "StepFailedError",
    "create_compute_worker",
    "create_compute_worker_server",
    "create_hook",
    "get_writable",
    "run_metadata",
    "sleep",
    "start_compute_worker_server",
    "start_workflow",
    "step",
    "workflow",
]


def __getattr__(name: str) -> Any:
    """``StartupError`` and ``SettingsError`` on first use: a workflow bundle imports this
    module for the authoring API, so nothing of the server half is imported eagerly."""
    if name in ("StartupError", "SettingsError"):
        from compute_worker.app import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_compute_worker(**options: Any) -> Starlette:
    """The ASGI application; the database opens and the engine starts in its lifespan
    (which raises ``StartupError`` when it cannot). Bad options: ``SettingsError``."""
    from compute_worker.app.server import create_app
    from compute_worker.app.settings import Settings

    return create_app(Settings.load(options))


def create_compute_worker_server(**options: Any) -> ComputeWorkerServer:
    """A hypercorn-backed server object; ``await server.serve()`` or ``await server.start()``."""
    from compute_worker.app.server import ComputeWorkerServer
    from compute_worker.app.settings import Settings

    return ComputeWorkerServer(Settings.load(options))


async def start_compute_worker_server(**options: Any) -> ServerHandle:
    """Start serving in the background; returns once connections are accepted, or raises
    ``StartupError`` with one line saying what is wrong (port taken, database
    unreachable, data directory unusable) and what to do."""
    return await create_compute_worker_server(**options).start()
