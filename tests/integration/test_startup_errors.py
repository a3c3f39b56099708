"""The Python factories refuse to start with one ``StartupError`` (or ``SettingsError``)
carrying the same one-line message as the CLI, never a driver's error."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from compute_worker import (
    SettingsError,
    StartupError,
    create_compute_worker,
    create_compute_worker_server,
    start_compute_worker_server,
)

CLOSED_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/db"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_database_is_a_startup_error_and_frees_the_port(
    tmp_path: Path,
) -> None:
    port = _free_port()
    with pytest.raises(StartupError) as refused:
        await asyncio.wait_for(
            start_compute_worker_server(
                port=port, data_dir=tmp_path / "data", database_url=CLOSED_POSTGRES
            ),
            15,
        )
    assert str(refused.value) == (
        "cannot connect to PostgreSQL at 127.0.0.1:1/db: connection refused — is it running? "
        "Check --database-url / COMPUTE_WORKER_DATABASE_URL."
    )
    assert refused.value.exit_code == 3
    with socket.socket() as again:  # the failed server let its socket go
        again.bind(("127.0.0.1", port))


async def test_a_taken_port_is_a_startup_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=rf"cannot listen on 127\.0\.0\.1:{port}: address "):
            await start_compute_worker_server(port=port, data_dir=tmp_path / "data")
    assert not (tmp_path / "data").exists()  # refused before touching storage


async def test_an_unusable_data_dir_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StartupError, match=r"cannot create the data directory .*not a directory"):
        await start_compute_worker_server(port=0, data_dir=tmp_path / "file" / "data")


def test_a_bad_option_is_a_settings_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        create_compute_worker_server(port="abc", data_dir=tmp_path)
    assert str(refused.value) == "option port must be an integer between 0 and 65535, not 'abc'"
    with pytest.raises(SettingsError, match="unknown option 'data_directory'"):
        create_compute_worker(data_directory=tmp_path)


async def test_the_asgi_app_lifespan_raises_the_startup_error(tmp_path: Path) -> None:
    app = create_compute_worker(data_dir=tmp_path / "data", database_url=CLOSED_POSTGRES)
    with pytest.raises(StartupError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1/db"):
        async with app.router.lifespan_context(app):
            pass
