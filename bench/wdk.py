"""A Workflow DevKit app's 10-step workflow on compute-worker vs on WDK's local world.

    .venv/bin/python bench/wdk.py [--repeat 3] [--samples 10] [--poll-ms 5]

Needs the interop tree installed (``make interop-setup``: Node >= 22 through
``interop/scripts/node-bin.sh``, ``interop/app`` built by ``workflow build``); without
it the script prints why and exits 0 (so ``make bench`` goes on).

The same app (``interop/app``, ``workflow`` 4.8.9, ``server.mjs``) runs twice, side by
side, its workflows started through its own ``POST /start``:

- **worker**: ``compute-worker serve`` (subprocess, SQLite in a temp data dir, a
  seeded key with every scope, a free port, ``--delivery-allow localhost``), a ``wdk``
  deployment registered and activated, the app started by ``interop/app/start.sh``
  with ``world-compute`` as its World: runs, events and the queue live in the worker,
  which delivers each queue message back to the app over HTTP;
- **local**: the same ``server.mjs`` with ``WORKFLOW_TARGET_WORLD=local`` (WDK's
  ``@workflow/world-local``: JSON files in a temp ``WORKFLOW_LOCAL_DATA_DIR``, its
  in-process queue calling the app back over HTTP).

In rounds (the two interleaved so both see the same machine), ``--samples`` runs one
at a time of ``noStep`` (0 steps) and of ``tenSteps`` (10 sequential trivial steps),
each timed from ``POST /start`` until ``GET /runs/:id`` (the app's runtime reading its
World) says completed, polled every ``--poll-ms``. Per round: "wall" = p50 10-step
latency / 10, "marginal" = (p50 10-step - p50 0-step) / 10 (what a step adds; start
and polling cancel out), and the CPU a 10-step run cost each process, also net of what
answering the polls costs (measured beforehand on a finished run). Then one table:
min / median over the rounds, worker and local side by side, worker / local.

The Python client shares the cores with Node and the worker, so every figure is a
bound. This is a benchmark, never a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from trigger import Server, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
INTEROP = ROOT / "interop"
APP = INTEROP / "app"
MANIFEST = APP / ".well-known" / "workflow" / "v1" / "manifest.json"
TEN_OUTPUT = {"value": 10}
ZERO_OUTPUT = {"sum": 3}


def missing_interop() -> str | None:
    """Why the app cannot run here, or None."""
    if not (APP / "node_modules" / "workflow").is_dir():
        return "interop/app/node_modules is missing"
    if not (INTEROP / "world-compute" / "dist" / "index.js").is_file():
        return "interop/world-compute is not built"
    if not MANIFEST.is_file() or '"tenSteps"' not in MANIFEST.read_text():
        return "interop/app is not built with its tenSteps workflow"
    return None


def node_binary() -> tuple[str, str]:
    """A Node >= 22 and its version (node-bin.sh installs interop/tools' when the
    machine's is older)."""
    found = subprocess.run([str(INTEROP / "scripts" / "node-bin.sh")], capture_output=True,
                           text=True, check=False)  # fmt: skip
    if found.returncode != 0:
        raise RuntimeError(f"no Node >= 22: {found.stderr.strip()}")
    node = found.stdout.strip()
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    return node, version.stdout.strip()


class App:
    """``interop/app/server.mjs`` in a subprocess; ``command`` starts it."""

    def __init__(self, label: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.label = label
        self.log = log
        self.process = subprocess.Popen(
            command, cwd=APP, env={**os.environ, **env}, stdout=subprocess.PIPE,
            stderr=log.open("w"), text=True,
        )  # fmt: skip

    async def wait_listening(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(120):
            while True:
                line = await asyncio.to_thread(self.process.stdout.readline)
                if not line:
                    error = self.log.read_text()[-2000:]
                    raise RuntimeError(f"the {self.label} app exited: {error}")
                found = re.search(r"wdk-app listening on (http://\S+)", line)
                if found is not None:
                    threading.Thread(target=self._drain, daemon=True).start()
                    return found.group(1)

    def _drain(self) -> None:
        """Keeps reading the app's stdout, so a chatty runtime never fills the pipe."""
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Target:
    label: str
    client: httpx.AsyncClient
    pids: dict[str, int]  # process name -> pid, for the CPU a run costs
    polling: dict[str, float]  # process name -> CPU s per s spent answering the polls alone


async def run_to_end(target: Target, workflow: str, args: list[int], expected: object,
                     poll_s: float) -> float:  # fmt: skip
    """Seconds from ``POST /start`` to the run read back completed with ``expected``."""
    started = time.perf_counter()
    run_id = await start(target, workflow, args)
    await wait_completed(target, run_id, expected, poll_s)
    return time.perf_counter() - started


async def start(target: Target, workflow: str, args: list[int]) -> str:
    answer = await target.client.post("/start", json={"workflow": workflow, "args": args})
    if answer.status_code != 202:
        raise RuntimeError(f"{target.label}: /start {workflow}: {answer.status_code} {answer.text}")
    return str(answer.json()["runId"])


async def wait_completed(target: Target, run_id: str, expected: object, poll_s: float) -> None:
    while True:
        run = (await target.client.get(f"/runs/{run_id}")).json()
        if run.get("status") == "completed":
            if run.get("output") != expected:
                raise RuntimeError(f"{target.label}: run {run_id} returned {run.get('output')!r}")
            return
        if run.get("status") in ("failed", "cancelled"):
            raise RuntimeError(f"{target.label}: run {run_id} ended {run}")
        await asyncio.sleep(poll_s)


async def polling_cost(target: Target, poll_s: float, seconds: float = 2.0) -> dict[str, float]:
    """CPU s per s each process spends answering ``GET /runs/:id`` every ``poll_s`` for a
    run that is over: what the watching costs, taken out of the CPU per run."""
    run_id = await start(target, "noStep", [1, 2])
    await wait_completed(target, run_id, ZERO_OUTPUT, poll_s)
    before = {name: cpu_seconds(pid) for name, pid in target.pids.items()}
    started = time.perf_counter()
    while time.perf_counter() < started + seconds:
        await target.client.get(f"/runs/{run_id}")
        await asyncio.sleep(poll_s)
    elapsed = time.perf_counter() - started
    return {name: (cpu_seconds(pid) - before[name]) / elapsed for name, pid in target.pids.items()}


async def one_round(target: Target, samples: int, poll_s: float) -> dict[str, float]:
    zero = [await run_to_end(target, "noStep", [1, 2], ZERO_OUTPUT, poll_s)
            for _ in range(samples)]  # fmt: skip
    cpu_before = {name: cpu_seconds(pid) for name, pid in target.pids.items()}
    ten = [await run_to_end(target, "tenSteps", [0], TEN_OUTPUT, poll_s) for _ in range(samples)]
    figures = {
        "zero": statistics.median(zero) * 1000,
        "ten": statistics.median(ten) * 1000,
        "wall": statistics.median(ten) * 100,
        "marginal": (statistics.median(ten) - statistics.median(zero)) * 100,
    }
    for name, pid in target.pids.items():
        used = cpu_seconds(pid) - cpu_before[name]
        figures[f"cpu {name}"] = used * 1000 / samples
        figures[f"net {name}"] = (used - target.polling[name] * sum(ten)) * 1000 / samples
    print(f"  {target.label:6s} " + "  ".join(f"{k} {v:.1f}" for k, v in figures.items()),
          flush=True)  # fmt: skip
    return figures


FIGURES = {
    "wall": "per step, wall (10-step p50 / 10), ms",
    "marginal": "per step, marginal ((10-step p50 - 0-step p50) / 10), ms",
    "ten": "10-step run, start -> completed, p50, ms",
    "zero": "0-step run, start -> completed, p50, ms",
}


def table(results: dict[str, dict[str, list[float]]]) -> None:
    worker, local = results["worker"], results["local"]
    print("\n| figure | worker min | worker median | local min | local median | worker / local |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key, name in FIGURES.items():
        ratio = statistics.median(worker[key]) / statistics.median(local[key])
        print(f"| {name} | {min(worker[key]):.2f} | {statistics.median(worker[key]):.2f} | "
              f"{min(local[key]):.2f} | {statistics.median(local[key]):.2f} | "
              f"{ratio:.2f}x |")  # fmt: skip
    for prefix, name in (
        ("cpu", "CPU per 10-step run, ms (median)"),
        ("net", "CPU per 10-step run net of the polling, ms (median)"),
    ):
        names = [key for key in worker if key.startswith(f"{prefix} ")]
        worker_cpu = sum(statistics.median(worker[key]) for key in names)
        local_cpu = statistics.median(local[f"{prefix} app"])
        parts = " + ".join(f"{key[4:]} {statistics.median(worker[key]):.1f}" for key in names)
        print(f"| {name} | {parts} | = {worker_cpu:.1f} | | {local_cpu:.1f} | "
              f"{worker_cpu / local_cpu:.2f}x |")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (min / median)")
    parser.add_argument("--samples", type=int, default=10, help="runs per latency, per round")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="GET /runs/:id interval")
    args = parser.parse_args()
    why = missing_interop()
    if why is not None:
        print(f"bench/wdk.py: skipped: {why} (run `make interop-setup`)")
        return
    try:
        node, version = node_binary()
    except RuntimeError as error:
        print(f"bench/wdk.py: skipped: {error} (run `make interop-setup`)")
        return
    folder = Path(tempfile.mkdtemp(prefix="cw-wdk-"))
    key = "bench_" + secrets.token_hex(16)
    server = Server(folder / "worker", key, flags=["--delivery-allow", "localhost"])
    apps: list[App] = []
    clients: list[httpx.AsyncClient] = []
    try:
        worker_url = await server.wait_listening()
        auth = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=worker_url, timeout=30, headers=auth) as api:
            created = await api.post("/v1/deployments", json={
                "kind": "wdk", "endpoint": {"url": "http://localhost"}})  # fmt: skip
            if created.status_code != 201:
                raise RuntimeError(f"wdk deployment refused: {created.status_code} {created.text}")
            deployment_id = created.json()["deploymentId"]
            (await api.post(f"/v1/deployments/{deployment_id}/activate")).raise_for_status()
        apps.append(App("worker", [str(APP / "start.sh"), worker_url, key, "0"],
                        {"WORKFLOW_COMPUTE_DEPLOYMENT_ID": deployment_id},
                        folder / "app-worker.err"))  # fmt: skip
        local_env = {"WORKFLOW_TARGET_WORLD": "local", "PORT": "0",
                     "WORKFLOW_LOCAL_DATA_DIR": str(folder / "world-local")}  # fmt: skip
        apps.append(App("local", [node, "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON",
                                  "server.mjs"], local_env, folder / "app-local.err"))  # fmt: skip
        targets = []
        for app in apps:
            client = httpx.AsyncClient(base_url=await app.wait_listening(), timeout=60)
            clients.append(client)
            pids = {"app": app.process.pid}
            if app.label == "worker":
                pids["worker"] = server.process.pid
            targets.append(Target(app.label, client, pids, {}))
        poll_s = args.poll_ms / 1000
        for target in targets:  # warm up: bundles loaded, connections open
            for _ in range(3):
                await run_to_end(target, "tenSteps", [0], TEN_OUTPUT, poll_s)
            target.polling = await polling_cost(target, poll_s)
            print(f"{target.label}: polling a finished run every {args.poll_ms:g} ms costs "
                  + ", ".join(f"{name} {share:.0%} of a core" for name, share
                              in target.polling.items()))  # fmt: skip
        print(f"interop/app (workflow 4.8.9) on Node {version}: worker = compute-worker serve "
              f"(SQLite, world-compute, the worker's own delivery) at {worker_url}; local = "
              f"@workflow/world-local; {args.samples} runs per latency one at a time, polled "
              f"every {args.poll_ms:g} ms, {args.repeat} rounds\n")  # fmt: skip
        results: dict[str, dict[str, list[float]]] = {target.label: {} for target in targets}
        for index in range(args.repeat):
            print(f"round {index + 1}", flush=True)
            for target in targets:
                for figure, value in (await one_round(target, args.samples, poll_s)).items():
                    results[target.label].setdefault(figure, []).append(value)
        table(results)
    finally:
        for client in clients:
            await client.aclose()
        for app in apps:
            app.stop()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
