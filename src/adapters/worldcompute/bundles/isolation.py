"""What a bundle's code runs with in a child process (the upload check's and the
``process`` backend's alike): an environment without the server's secrets, and the
resource limits the child sets on itself before it imports the bundle."""

from __future__ import annotations

import importlib.util
import os
import resource
from pathlib import Path

_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")


def child_environment() -> dict[str, str]:
    """What bundle code may see of the server's environment: nothing secret (no
    database URLs, keys or ``COMPUTE_WORKER_*`` settings); the server's own modules
    importable, and no bytecode written into the installation."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env["PYTHONPATH"] = source_root()
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def source_root() -> str:
    """The folder holding the ``compute_worker`` package (``src`` in a checkout,
    ``site-packages`` once installed)."""
    spec = importlib.util.find_spec("compute_worker")  # imported already: no import here
    assert spec is not None and spec.origin is not None
    return str(Path(spec.origin).resolve().parents[1])


def limit_resource(kind: int, value: int | None) -> None:
    """Cap resource ``kind`` (``resource.RLIMIT_*``) at ``value``, or at the hard limit
    when that is lower; None or 0 leaves it alone."""
    if not value or value < 0:
        return
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))
