"""A real compute-worker server on a real socket (port 0), one per test, over SQLite
(a file in ``tmp_path``) and PostgreSQL (``postgres_url``), plus HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from compute_worker import start_compute_worker_server

from ._helpers import READ_KEY, WORLD_KEY
from .public_fixtures import PublicServer, PublicServers, deploy

SEED_KEYS = [
    {"key": WORLD_KEY, "scopes": ["world:proxy"], "name": "world"},
    {"key": READ_KEY, "scopes": ["runs:read"], "name": "reader"},
]
CLIENT_TIMEOUT = httpx.Timeout(20.0)


@dataclass
class Backend:
    """Where a server keeps its data: ``options`` go to the server factory."""

    kind: str
    options: dict[str, Any]
    cli_args: list[str] = field(default_factory=list)


@dataclass
class RunningServer:
    url: str
    backend: Backend
    data_dir: Path


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "world.db"
        return Backend("sqlite", {"sqlite_path": path}, ["--sqlite-path", str(path)])
    url: str = request.getfixturevalue("postgres_url")
    return Backend("postgres", {"database_url": url}, ["--database-url", url])


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server(backend: Backend, tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start a server on port 0 with extra options; every server is closed at teardown."""
    handles = []

    async def start(**extra: Any) -> RunningServer:
        data_dir = tmp_path / f"data-{len(handles)}"
        handle = await start_compute_worker_server(
            data_dir=data_dir,
            port=0,
            seed_api_keys=SEED_KEYS,
            **backend.options,
            **extra,
        )
        handles.append(handle)
        return RunningServer(handle.url, backend, data_dir)

    try:
        yield start
    finally:
        for handle in reversed(handles):
            await handle.close()


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server()


def make_client(url: str, key: str | None = WORLD_KEY, **kwargs: Any) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=CLIENT_TIMEOUT, **kwargs)


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding the ``world:proxy`` key."""
    async with make_client(server.url) as http:
        yield http


@pytest.fixture
async def anon(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending no Authorization header."""
    async with make_client(server.url, key=None) as http:
        yield http


@pytest.fixture
async def reader_client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose key holds only ``runs:read``."""
    async with make_client(server.url, key=READ_KEY) as http:
        yield http


# -- the public lane (tests/integration/public_fixtures.py) ---------------------------


@pytest.fixture
async def servers(backend: Backend, tmp_path: Path) -> AsyncIterator[PublicServers]:
    async with PublicServers(backend, tmp_path) as started:
        yield started


@pytest.fixture
async def api_server(servers: PublicServers) -> PublicServer:
    return await servers.start()


@pytest.fixture
async def api(api_server: PublicServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding a key with every scope."""
    async with api_server.client() as client:
        yield client


@pytest.fixture
async def deployed(api: httpx.AsyncClient) -> dict[str, Any]:
    """The active deployment of ``WORKFLOWS``."""
    return await deploy(api)
