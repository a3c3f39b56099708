"""Scale-out on PostgreSQL: 10-step workflows with 1 and with 2 worker processes.

    .venv/bin/python bench/engine_postgres.py [--seconds 10] [--postgres ADMIN_URL]

Each figure uses a fresh database. N ``compute-worker serve`` processes share it
(``--worldcompute local``, one artifact folder); runs are triggered 40 at a time,
spread over the processes, and the runs that complete inside the window are
counted in the database. Target (shared/PERFORMANCE.md): 2 processes >= 1.6x one.
On this 2-core machine the PostgreSQL server and the load generator share the
cores with the workers, so the ceiling is lower than on separate machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from bundle import BUNDLE

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
KEY = "bench-" + uuid.uuid4().hex
SCOPES = ["trigger:write", "runs:read", "deploy:read", "deploy:write", "world:proxy"]
CLI = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "compute-worker")


def _spawn(url: str, folder: Path, index: int) -> subprocess.Popen[str]:
    seeds = json.dumps([{"key": KEY, "scopes": SCOPES, "name": "bench"}])
    return subprocess.Popen(
        [CLI, "serve", "--port", "0", "--database-url", url, "--worldcompute", "local",
         "--data-dir", str(folder / f"worker{index}"), "--artifact-dir", str(folder / "art"),
         "--seed-api-keys", seeds, "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


async def start_worker(url: str, folder: Path, index: int) -> tuple[subprocess.Popen[str], str]:
    process = await asyncio.to_thread(_spawn, url, folder, index)
    assert process.stdout is not None
    line = await asyncio.to_thread(process.stdout.readline)
    found = re.search(r"listening on (\S+)", line)
    if not found:
        process.kill()
        raise RuntimeError(f"worker did not start: {line!r}")
    return process, found.group(1)


async def measure(admin: str, workers: int, seconds: float, concurrency: int) -> float:
    name = f"cw_scale_{uuid.uuid4().hex[:8]}"
    admin_conn = await asyncpg.connect(admin)
    await admin_conn.execute(f'CREATE DATABASE "{name}"')
    database = admin.rsplit("/", 1)[0] + "/" + name
    folder = Path(tempfile.mkdtemp(prefix="cw-scale-"))
    processes: list[subprocess.Popen[str]] = []
    try:
        urls = []
        for index in range(workers):
            process, url = await start_worker(
                database.replace("postgresql://", "postgresql+asyncpg://"), folder, index
            )
            processes.append(process)
            urls.append(url)
        clients = [httpx.AsyncClient(base_url=u, headers={"Authorization": f"Bearer {KEY}"},
                                     timeout=30) for u in urls]  # fmt: skip
        created = await clients[0].post(
            "/v1/deployments", json={"kind": "python", "files": {"workflows.py": BUNDLE}}
        )
        deployment = created.json()["deploymentId"]
        await clients[0].post(f"/v1/deployments/{deployment}/activate")
        deadline = time.monotonic() + seconds
        counter = 0

        async def trigger_loop(client: httpx.AsyncClient) -> None:
            nonlocal counter
            while time.monotonic() < deadline:
                counter += 1
                headers = {"Idempotency-Key": f"k{counter}"}
                await client.post("/v1/runs", json={"workflowName": "ten", "input": [0]},
                                  headers=headers)  # fmt: skip
                await asyncio.sleep(0.02)

        db = await asyncpg.connect(database)
        start_ms = int(time.time() * 1000)
        await asyncio.gather(*(trigger_loop(clients[i % workers]) for i in range(concurrency)))
        end_ms = int(time.time() * 1000)
        done = await db.fetchval(
            "SELECT count(*) FROM runs WHERE status = 'completed' AND completed_ms <= $1", end_ms
        )
        await db.close()
        for client in clients:
            await client.aclose()
        return float(done) / ((end_ms - start_ms) / 1000)
    finally:
        await asyncio.to_thread(_stop, processes)
        await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_conn.close()
        shutil.rmtree(folder, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--postgres", default=ADMIN_URL)
    args = parser.parse_args()
    one = await measure(args.postgres, 1, args.seconds, args.concurrency)
    two = await measure(args.postgres, 2, args.seconds, args.concurrency)
    print(f"10-step workflows on PostgreSQL, {args.concurrency} triggers in flight, "
          f"{args.seconds:.0f} s windows")  # fmt: skip
    print(f"  1 worker process : {one:6.1f} workflows/s completed")
    print(f"  2 worker processes: {two:6.1f} workflows/s completed  = {two / one:.2f}x "
          f"(target >= 1.6x)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
