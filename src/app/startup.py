"""Start-up checks: each failure is one ``StartupError`` line saying what is wrong and
what to do (the CLI exits 3 with it; the Python factories raise it).

Storage folders are created 0700 and proved writable; the database must answer
within ``PROBE_TIMEOUT`` seconds; the listening address must be free.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from compute_worker.adapters.sql.database import Database, DatabaseUnavailable
from compute_worker.app.errors import StartupError
from compute_worker.app.settings import Settings, describe_settings

T = TypeVar("T")
PROBE_TIMEOUT = 5.0  # seconds for the database to answer at start


def where_to_set(name: str) -> str:
    """``--port / COMPUTE_WORKER_PORT``: where a user changes a setting."""
    spec = next(spec for spec in describe_settings() if spec.name == name)
    return f"{spec.flag} / {spec.env}" if spec.flag else f"option {name}"


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)).lower()


# -- storage ---------------------------------------------------------------------------------


def prepare_storage(settings: Settings) -> None:
    """Create the data, artifact and code folders (0700) and the SQLite file's folder,
    and prove each writable. Blocking: run it in a thread."""
    folders = [
        ("data directory", "data_dir", settings.data_dir),
        ("artifact directory", "artifact_dir", settings.artifact_dir),
        ("code directory", "code_dir", settings.code_dir),
    ]
    if settings.database_url is None:
        folders.append(("SQLite database folder", "sqlite_path", settings.sqlite_path.parent))
    for label, name, folder in folders:
        _private_folder(label, name, folder)
    if settings.database_url is None and settings.sqlite_path.is_dir():
        raise StartupError(
            f"cannot open the SQLite database {settings.sqlite_path}: it is a directory — "
            f"choose a file with {where_to_set('sqlite_path')}."
        )


def _private_folder(label: str, name: str, folder: Path) -> None:
    fix = f"choose another {where_to_set(name)}"
    missing = []
    existing = folder
    while not existing.exists() and not existing.is_symlink():
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        problem = "exists and is not a directory" if existing == folder else (
            f"{existing} is not a directory")  # fmt: skip
        raise StartupError(f"cannot create the {label} {folder}: {problem} — {fix}.")
    try:
        for path in reversed(missing):
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                if not path.is_dir():
                    raise
    except OSError as error:
        problem = _reason(error)
        raise StartupError(f"cannot create the {label} {folder}: {problem} — {fix}.") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise StartupError(
            f"cannot write to the {label} {folder}: {_reason(error)} — make it writable or {fix}."
        ) from None


def guard_os(action: str, name: str, work: Callable[[], T]) -> T:
    """``work()``, with an ``OSError`` as a ``StartupError`` naming the setting."""
    try:
        return work()
    except OSError as error:
        raise StartupError(
            f"cannot {action}: {_reason(error)} — check {where_to_set(name)}."
        ) from None


# -- the database ----------------------------------------------------------------------------


async def check_database(database: Database) -> None:
    """The database answers within ``PROBE_TIMEOUT`` seconds, or a ``StartupError``."""
    config = database.config
    try:
        await database.probe(PROBE_TIMEOUT)
    except DatabaseUnavailable as unavailable:
        reason = str(unavailable)
        if config.database_url is None:
            raise StartupError(
                f"cannot open the SQLite database {config.sqlite_path}: {reason} — "
                f"choose another {where_to_set('sqlite_path')}."
            ) from None
        advice = {
            "connection refused": " — is it running?",
            "unknown host": " — is the host name right?",
        }.get(reason, " — is it running and reachable?" if reason.startswith("no answer") else ".")
        raise StartupError(
            f"cannot connect to PostgreSQL at {config.where()}: {reason}{advice} "
            f"Check {where_to_set('database_url')}."
        ) from None


# -- the listening socket --------------------------------------------------------------------


def listen_error(host: str, port: int, error: OSError) -> StartupError:
    """Why ``host:port`` cannot be bound, and what to do about it."""
    at = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        fix = f"stop the other server or choose {where_to_set('port')}"
    elif error.errno == errno.EACCES:
        fix = f"ports below 1024 need privileges: choose another {where_to_set('port')}"
    elif isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        fix = f"choose an address of this machine with {where_to_set('host')}"
    else:
        fix = f"check {where_to_set('host')} and {where_to_set('port')}"
    reason = "unknown host" if isinstance(error, socket.gaierror) else _reason(error)
    return StartupError(f"cannot listen on {at}: {reason} — {fix}.")
