"""Server factories: the ASGI app, and hypercorn serving it (HTTP/1.1 and HTTP/2:
h2c with prior knowledge on plain TCP, h2 through ALPN when TLS is configured).

A server that cannot start raises one ``StartupError`` (port taken, TLS files
unreadable, database unreachable, storage unwritable) instead of the error of the
library underneath."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from starlette.applications import Starlette

from compute_worker.adapters.http import metrics_routes, public_routes, ui_routes, world_routes
from compute_worker.adapters.http.app import build_app
from compute_worker.adapters.http.services import HttpServices
from compute_worker.adapters.observability.otel import wanted as tracing_wanted
from compute_worker.app.errors import StartupError
from compute_worker.app.guards import check_target_world
from compute_worker.app.runtime import Runtime
from compute_worker.app.settings import Settings
from compute_worker.app.startup import listen_error, where_to_set

KEEP_ALIVE_MAX_REQUESTS = 1_000_000
START_TIMEOUT = 30.0


def create_app(
    settings: Settings,
    own_url: Callable[[], str | None] | None = None,
    listening_url: Callable[[], str | None] | None = None,
) -> Starlette:
    """The ASGI app; refuses (``StartupRefused``) an unsafe production configuration.

    ``own_url``: where the worker is reached (default: the ``internal_url`` option), an
    address graph HTTP nodes are refused; ``listening_url`` is logged at start."""
    check_target_world(settings)

    @asynccontextmanager
    async def services() -> AsyncIterator[HttpServices]:
        runtime = Runtime(settings, execute=True, own_url=own_url, listening_url=listening_url)
        app.state.runtime = runtime  # the server stops its engine before closing connections
        async with runtime as container:
            yield container.http_services()

    public, ui = public_routes.ROUTES, ui_routes.ROUTES if settings.ui else []
    if settings.role == "executor":  # clients use the api nodes; probes still see health
        public, ui = [route for route in public if route.path == "/v1/health"], []
    app = build_app(
        [*public, *world_routes.ROUTES, *metrics_routes.ROUTES, *ui],
        services,
        require_https=settings.require_https,
        trust_forwarded_proto=settings.trust_forwarded_proto,
        rate_limited=settings.rate_limit_per_minute > 0,
        traced=settings.trace_exporter is not None or tracing_wanted(os.environ),
    )
    return app


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.loglevel = settings.log_level.upper()
    config.h2_max_concurrent_streams = 256
    if settings.certfile is not None:
        config.certfile = str(settings.certfile)
        config.keyfile = str(settings.keyfile or settings.certfile)  # or both in one PEM
        config.alpn_protocols = ["h2", "http/1.1"]
    return config


@dataclass
class ServerHandle:
    """A listening server: its base ``url`` and ``close()``."""

    url: str
    _stop: asyncio.Event
    _task: asyncio.Task[None]

    async def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def __aenter__(self) -> ServerHandle:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class ComputeWorkerServer:
    """The app and its hypercorn configuration; not listening until ``serve``/``start``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url: str | None = None
        self.app = create_app(settings, lambda: settings.internal_url or self.url, lambda: self.url)
        self.config = hypercorn_config(settings)

    def _sockets(self) -> Sockets:
        """Bind the listening socket(s), after checking the TLS files load."""
        if self.config.ssl_enabled:
            try:
                self.config.create_ssl_context()
            except (OSError, ValueError) as error:
                files = where_to_set("certfile") + " and " + where_to_set("keyfile")
                if isinstance(error, ssl.SSLError):  # an OSError without strerror
                    reason = "not a PEM certificate with its private key"
                else:
                    reason = str(getattr(error, "strerror", None) or error).lower()
                raise StartupError(
                    f"cannot load the TLS certificate {self.settings.certfile}: {reason} — "
                    f"check {files}."
                ) from None
        try:
            return _bind(self.settings.host, self.settings.port, self.config.ssl_enabled)
        except OSError as error:
            raise listen_error(self.settings.host, self.settings.port, error) from None

    async def serve(self, shutdown_trigger: Any = None, sockets: Sockets | None = None) -> None:
        """Serve until ``shutdown_trigger`` returns (default: SIGINT/SIGTERM)."""
        sockets = sockets or self._sockets()
        self.url = _url_of(sockets, self.config.ssl_enabled)
        wait_for_stop = shutdown_trigger or _signalled()

        async def stop_engine_first() -> None:
            await wait_for_stop()
            runtime = getattr(self.app.state, "runtime", None)
            if runtime is not None:
                await runtime.stop_executing()

        try:
            await worker_serve(
                wrap_app(self.app, self.config.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
                self.config,
                sockets=sockets,
                shutdown_trigger=stop_engine_first,
            )
        except Exception:
            for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
                sock.close()
            failure = getattr(getattr(self.app.state, "runtime", None), "failure", None)
            if failure is not None:  # the lifespan failed: say why, not how hypercorn saw it
                raise failure from None
            raise

    async def start(self) -> ServerHandle:
        """Bind, start serving in the background, and return once connections are accepted
        (the database opened and migrated); raises ``StartupError`` when it cannot."""
        sockets = self._sockets()
        bound = (sockets.secure_sockets or sockets.insecure_sockets)[0]
        host, port = bound.getsockname()[:2]
        stop = asyncio.Event()
        task = asyncio.create_task(self.serve(stop.wait, sockets))
        await _wait_until_accepting(host, port, task)
        return ServerHandle(_url_of(sockets, self.config.ssl_enabled), stop, task)


def _bind(host: str, port: int, tls: bool) -> Sockets:
    """The listening socket, bound as hypercorn binds it (``config.create_sockets``), but
    closed again when binding fails."""
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return Sockets([sock], [], []) if tls else Sockets([], [sock], [])


def _signalled() -> Callable[[], Awaitable[None]]:
    """SIGINT or SIGTERM, as hypercorn would wait for them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        loop.add_signal_handler(getattr(signal, name), stop.set)

    async def wait() -> None:
        await stop.wait()

    return wait


def _url_of(sockets: Sockets, tls: bool) -> str:
    bound = (sockets.secure_sockets or sockets.insecure_sockets)[0]
    host, port = bound.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


async def _wait_until_accepting(host: str, port: int, task: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        if task.done():
            task.result()  # raises what stopped the server
            raise RuntimeError("the server stopped while starting")
        try:
            _, writer = await asyncio.open_connection(host, port, family=family)
        except OSError:
            if loop.time() > deadline:
                task.cancel()
                raise TimeoutError(f"no connections accepted on port {port}") from None
            await asyncio.sleep(0.01)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
