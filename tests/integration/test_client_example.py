"""``examples/client_quickstart.py`` run as a user runs it: a subprocess in a fresh
directory, against a real server with the default (process) backend, the URL and key
from the environment as a user would export them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from .public_fixtures import ADMIN_KEY, PublicServers, cli_env

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "client_quickstart.py"


async def test_the_quickstart_runs_end_to_end(servers: PublicServers, tmp_path: Path) -> None:
    server = await servers.start()
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    env = cli_env(COMPUTE_WORKER_URL=server.url, COMPUTE_WORKER_API_KEY=ADMIN_KEY)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), cwd=workdir, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    out = stdout.decode()
    assert process.returncode == 0, (out, stderr.decode())
    assert "deployed dpl_" in out and "active: True" in out
    assert "progress: reserved stock for order-" in out
    assert "progress: waiting for approval" in out
    assert out.count("progress:") == 3 and ": approved" in out
    assert "completed: {'reservation'" in out and "'approved': True" in out
    assert "steps: reserve (completed), say (completed), say (completed)" in out
