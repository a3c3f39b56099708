"""The execution engine: 10-step workflows of trivial steps on SQLite, in process.

    .venv/bin/python bench/engine.py [--seconds 5] [--backend local|process]

The server listens on a free port (the process backend's children reach the World
through it); the workflows are triggered and watched in process.

Prints workflows/s, steps/s and the per-step overhead at concurrency 1 and 20,
the latency of a 0-step run (trigger → completed), and the raw commit rate of the
same SQLite file measured in the same run. Targets (shared/PERFORMANCE.md):
≤ 0.6 ms per step one at a time, ≥ 3,000 steps/s at 20 at a time, 0-step run
≤ 8 ms p50 (bench/trigger.py measures it over HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bundle import BUNDLE
from compute_worker.app.server import ComputeWorkerServer
from compute_worker.app.settings import Settings
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.use_cases.deployments import NewDeployment
from compute_worker.domain.use_cases.trigger_run import Trigger
from compute_worker.domain.world import run_topic
from world_events import raw_sqlite

CONTEXT = RequestContext("BENCH", "/bench", "bench")


class Bench:
    def __init__(self, container: object) -> None:
        self.c = container
        self.counter = 0

    async def run_one(self, workflow: str, run_input: list[object]) -> float:
        self.counter += 1
        started = time.perf_counter()
        signal = self.c.signal()  # type: ignore[attr-defined]
        trigger = Trigger(workflow, f"k{self.counter}", "bench", run_input)
        triggered = await self.c.trigger_run().execute(trigger, CONTEXT)  # type: ignore[attr-defined]
        run_id = triggered.run.run_id
        subscription = signal.subscribe(run_topic(run_id))
        try:
            reader = self.c.world_reader()  # type: ignore[attr-defined]
            while True:
                run = await reader.get_run(run_id)
                if run is not None and run.is_terminal:
                    if run.status != "completed":
                        raise RuntimeError(f"{workflow} ended {run.status}: {run.error}")
                    return time.perf_counter() - started
                await subscription.wait(1.0)  # run_completed wakes it at once
        finally:
            subscription.close()

    async def resume_latency(self, samples: int) -> list[float]:
        """Hook resume → run completed: the run waits on a hook, then is resumed."""
        latencies = []
        for index in range(samples):
            token = f"bench-hook-{self.counter}-{index}"
            self.counter += 1
            trigger = Trigger("hooked", f"k{self.counter}", "bench", [token])
            run_id = (await self.c.trigger_run().execute(trigger, CONTEXT)).run.run_id  # type: ignore[attr-defined]
            reader = self.c.world_reader()  # type: ignore[attr-defined]
            for _ in range(5000):  # until the workflow has created its hook
                if await reader.get_hook_by_token(token) is not None:
                    break
                await asyncio.sleep(0.002)
            subscription = self.c.signal().subscribe(run_topic(run_id))  # type: ignore[attr-defined]
            started = time.perf_counter()
            await self.c.resume_hook().execute(token, {"ok": True}, CONTEXT)  # type: ignore[attr-defined]
            try:
                while True:
                    run = await reader.get_run(run_id)
                    if run is not None and run.is_terminal:
                        break
                    await subscription.wait(1.0)
            finally:
                subscription.close()
            latencies.append(time.perf_counter() - started)
        return sorted(latencies)

    async def throughput(self, concurrency: int, seconds: float) -> tuple[float, float]:
        deadline = time.perf_counter() + seconds
        done = 0

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await self.run_one("ten", [0])
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        return done / elapsed, elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backend", choices=["local", "process"], default="local")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cw-engine-"))
    try:
        raw = await raw_sqlite(folder / "raw.db", 2.0)
        settings = Settings.load({"data_dir": folder, "worldcompute": args.backend,
                                  "port": 0, "log_level": "warning"}, env={})  # fmt: skip
        server = ComputeWorkerServer(settings)  # the process backend's children call it
        async with await server.start():
            container = server.app.state.runtime.container
            created = await container.create_deployment().execute(
                NewDeployment("python", {"workflows.py": BUNDLE.encode()}), CONTEXT
            )
            await container.activate_deployment().execute(created.deployment_id, CONTEXT)
            bench = Bench(container)
            for _ in range(20):  # warm up
                await bench.run_one("ten", [0])
            zero = sorted([await bench.run_one("zero", []) for _ in range(200)])
            print(f"backend {args.backend}, SQLite WAL synchronous=FULL; raw aiosqlite "
                  f"commits/s on this disk: {raw:.0f}")  # fmt: skip
            print(f"0-step run, trigger -> completed (in process): p50 "
                  f"{statistics.median(zero) * 1000:.2f} ms, p99 "
                  f"{zero[int(len(zero) * 0.99)] * 1000:.2f} ms")  # fmt: skip
            resumed = await bench.resume_latency(100)
            print(f"hook resume -> run completed (in process): p50 "
                  f"{statistics.median(resumed) * 1000:.2f} ms, p99 "
                  f"{resumed[int(len(resumed) * 0.99)] * 1000:.2f} ms")  # fmt: skip
            for concurrency in (1, 20):
                rate, _ = await bench.throughput(concurrency, args.seconds)
                per_step_ms = 1000 * concurrency / (rate * 10)
                print(f"10-step workflows, {concurrency:2d} at a time: {rate:7.1f} workflows/s, "
                      f"{rate * 10:7.0f} steps/s, {per_step_ms:.3f} ms per step "
                      f"(wall time per step of one workflow)")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
