"""The hot-path figures of issue 12, side by side in one run, over HTTP.

    .venv/bin/python bench/suite.py [--repeat 3] [--seconds 3] [--connections 64]
                                    [--backends process,local]
                                    [--variant NAME=FLAGS ...] [--variant-src NAME=DIR ...]

Starts one ``compute-worker serve`` per backend (subprocesses, SQLite WAL
synchronous=FULL in a temp data dir, a seeded key with every scope, random
ports), deploys the same bundle on each, then measures in rounds, the backends
interleaved inside each round so both see the same machine:

- **0-step run**: trigger -> completed, one at a time, learnt through the long-poll
  ``GET /v1/runs/:id?wait=30`` (p50 of ``--samples`` runs); a server without ``wait``
  (an older checkout given with ``--variant-src``) is polled every 1 ms instead;
- **per durable step**: a 10-step workflow of trivial steps one at a time;
  "marginal" = (p50 10-step latency - p50 0-step latency) / 10 (what a step adds,
  the trigger and the polling cancel out), "wall" = p50 10-step latency / 10;
- **steps/s, 20 runs at a time**: 20 clients each trigger a 10-step run and poll
  it every 5 ms until completed, for ``--seconds`` (the polling is part of the load);
- **POST /v1/runs at N connections**: the same server's ``GET /v1/health`` rate
  first (the baseline), then triggers with a unique Idempotency-Key each;
  trigger/health ratio and trigger p99. The server drains the accepted runs
  before the next figure.

Then one table: each figure's min / median / max over ``--repeat`` rounds, the
target (``../shared/PERFORMANCE.md``) and, for the per-step cost, the process
backend as a multiple of the local one.

``--variant NAME=FLAGS`` (repeatable) runs one more server per backend with those
``serve`` flags (e.g. ``--variant asyncio='--event-loop asyncio' --variant
uvloop='--event-loop uvloop'``), interleaved in the same rounds; ``--variant-src
NAME=DIR`` runs that variant from another checkout's ``src`` folder (``git worktree
add /tmp/cw-base COMMIT``: the figures before a change). Each variant after the
first is then also given as a ratio to the first, figure by figure.

The load generator is bench/trigger.py's raw keep-alive HTTP/1.1 client (~0.02 ms
of CPU per request); it shares the cores with the server, so every figure is a
lower bound. This is a benchmark, never a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bundle import BUNDLE
from trigger import RawConnection, Send, Server, load, wait_idle

TEN = json.dumps({"workflowName": "ten", "input": [0]}).encode()
ZERO = json.dumps({"workflowName": "zero"}).encode()


async def call(send: Send, method: str, path: str, body: bytes | None = None) -> dict[str, object]:
    key = uuid.uuid4().hex if method == "POST" else None
    status, answer = await send(method, path, body, key)
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {status} {answer!r}")
    return dict(json.loads(answer))


async def deploy(send: Send) -> None:
    body = json.dumps({"kind": "python", "files": {"workflows.py": BUNDLE}}).encode()
    created = await call(send, "POST", "/v1/deployments", body)
    await call(send, "POST", f"/v1/deployments/{created['deploymentId']}/activate")


async def run_to_end(send: Send, body: bytes, poll_s: float) -> float:
    """Seconds from the trigger to the run seen completed, through the long-poll; a
    server that answers at once (it has no ``wait``) is asked again after ``poll_s``."""
    started = time.perf_counter()
    run_id = (await call(send, "POST", "/v1/runs", body))["runId"]
    while True:
        run = await call(send, "GET", f"/v1/runs/{run_id}?resolveData=none&wait=30")
        if run.get("status") == "completed":
            return time.perf_counter() - started
        if run.get("status") in ("failed", "cancelled"):
            raise RuntimeError(f"run {run_id} ended {run.get('status')}: {run}")
        await asyncio.sleep(poll_s)


async def concurrent_steps(senders: list[Send], runs: int, seconds: float) -> float:
    """Steps/s with ``runs`` 10-step runs in flight: one poller lists the pending and
    running runs every 10 ms (so the watching costs ~100 small requests/s, not one
    poll per run); a run gone from that list has ended and is replaced at once."""
    poll, trigger_senders = senders[0], senders[1 : runs + 1]

    async def start(send: Send) -> str:
        return str((await call(send, "POST", "/v1/runs", TEN))["runId"])

    started = time.perf_counter()
    deadline = started + seconds
    in_flight = set(await asyncio.gather(*(start(send) for send in trigger_senders)))
    done = 0
    while True:
        await asyncio.sleep(0.01)
        listed = await call(poll, "GET", "/v1/runs?status=pending,running&limit=1000"
                                         "&resolveData=none")  # fmt: skip
        live = {str(run["runId"]) for run in listed["data"]}  # type: ignore[attr-defined]
        finished = in_flight - live
        in_flight -= finished
        done += len(finished)
        if time.perf_counter() >= deadline:
            break
        replacements = zip(finished, trigger_senders, strict=False)
        in_flight |= set(await asyncio.gather(*(start(send) for _, send in replacements)))
    elapsed = time.perf_counter() - started
    failed = await call(poll, "GET", "/v1/runs?status=failed,cancelled&limit=1&resolveData=none")
    if failed["data"]:
        raise RuntimeError(f"a run did not complete: {failed['data']}")
    return done * 10 / elapsed


@dataclass
class Target:
    name: str
    unit: str
    text: str  # the target, as written in PERFORMANCE.md
    met: Callable[[float], bool] | None


TARGETS = {
    "step_marginal": Target("per durable step (marginal), 1 at a time", "ms", "<= 0.6 ms",
                            lambda v: v <= 0.6),
    "step_wall": Target("per durable step (wall: 10-step p50 / 10)", "ms", "", None),
    "steps_20": Target("steps/s, 20 runs at a time", "/s", ">= 3,000", lambda v: v >= 3000),
    "health": Target("GET /v1/health (baseline)", "/s", "", None),
    "trigger": Target("POST /v1/runs", "/s", "", None),
    "trigger_share": Target("POST /v1/runs / health", "%", ">= 50 %", lambda v: v >= 50),
    "trigger_p99": Target("POST /v1/runs p99", "ms", "<= 50 ms", lambda v: v <= 50),
    "zero_p50": Target("0-step run, trigger -> completed, p50", "ms", "<= 8 ms",
                       lambda v: v <= 8),
}  # fmt: skip


async def one_round(
    backend: str, senders: list[Send], pid: int, args: argparse.Namespace
) -> dict[str, float]:
    figures: dict[str, float] = {}
    zero = sorted([await run_to_end(senders[0], ZERO, 0.001) for _ in range(args.samples)])
    ten = sorted([await run_to_end(senders[0], TEN, 0.001) for _ in range(args.samples)])
    figures["zero_p50"] = statistics.median(zero) * 1000
    figures["step_wall"] = statistics.median(ten) * 100
    figures["step_marginal"] = (statistics.median(ten) - statistics.median(zero)) * 100
    figures["steps_20"] = await concurrent_steps(senders, 20, args.seconds)
    await wait_idle(pid)
    health = await load(senders, pid, "health", args.seconds)
    trigger = await load(senders, pid, "trigger", args.seconds)
    await wait_idle(pid, 120.0)  # the accepted runs execute after their 202
    figures["health"] = health.rate
    figures["trigger"] = trigger.rate
    figures["trigger_share"] = 100 * trigger.rate / health.rate
    figures["trigger_p99"] = trigger.p99_ms
    print(f"  {backend:8s} " + "  ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    return figures


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f}"
    if unit == "%":
        return f"{value:.0f} %"
    return f"{value:,.0f}"


def table(results: dict[str, dict[str, list[float]]], backends: list[str]) -> None:
    """``backends``: the server labels, ``backend`` or ``backend/variant``."""
    print("\n| figure | backend | min | median | max | target | |")
    print("| --- | --- | ---: | ---: | ---: | --- | --- |")
    for key, target in TARGETS.items():
        for backend in backends:
            values = results[backend][key]
            median = statistics.median(values)
            verdict = "" if target.met is None else ("met" if target.met(median) else "missed")
            print(f"| {target.name} | {backend} | {fmt(min(values), target.unit)} | "
                  f"{fmt(median, target.unit)} | {fmt(max(values), target.unit)} | "
                  f"{target.text} | {verdict} |")  # fmt: skip
    variants = list(dict.fromkeys(label.partition("/")[2] for label in backends))
    for variant in variants[1:]:
        for key, target in TARGETS.items():
            for backend in dict.fromkeys(label.partition("/")[0] for label in backends):
                ours, base = results[f"{backend}/{variant}"][key], results[
                    f"{backend}/{variants[0]}"][key]  # fmt: skip
                ratios = sorted(o / b for o, b in zip(ours, base, strict=True) if b)
                if ratios:
                    print(f"| {target.name}: {variant} / {variants[0]} | {backend} | "
                          f"{ratios[0]:.2f}x | {statistics.median(ratios):.2f}x | "
                          f"{ratios[-1]:.2f}x | | |")  # fmt: skip
    if "process" in results and "local" in results:
        for key in ("step_marginal", "step_wall"):
            ratios = [p / lo for p, lo in zip(results["process"][key], results["local"][key],
                                              strict=True)]  # fmt: skip
            print(f"| {TARGETS[key].name}: process / local | — | {min(ratios):.2f}x | "
                  f"{statistics.median(ratios):.2f}x | {max(ratios):.2f}x | | |")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (min/median/max)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per load figure")
    parser.add_argument("--samples", type=int, default=50, help="runs per latency figure")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--backends", default="process,local", help="comma-separated")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="one more server per backend with these serve flags",
    )
    parser.add_argument(
        "--variant-src",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="run that variant from another checkout's src folder",
    )
    args = parser.parse_args()
    kinds = [name.strip() for name in args.backends.split(",") if name.strip()]
    variants = dict(spec.partition("=")[::2] for spec in args.variant)
    sources = {name: Path(folder) for name, _, folder in
               (spec.partition("=") for spec in args.variant_src)}  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="cw-suite-"))
    key = "bench_" + secrets.token_hex(16)
    servers = {}
    for kind in kinds:
        for variant, flags in (variants or {"": ""}).items():
            name = f"{kind}/{variant}" if variant else kind
            servers[name] = Server(folder / name.replace("/", "-"), key, kind,
                                   shlex.split(flags), sources.get(variant))  # fmt: skip
    backends = list(servers)
    connections: list[RawConnection] = []
    try:
        senders: dict[str, list[Send]] = {}
        for name, server in servers.items():
            url = await server.wait_listening()
            pool = [RawConnection(url, key) for _ in range(args.connections)]
            connections += pool
            senders[name] = [connection.send for connection in pool]
            await deploy(senders[name][0])
            for _ in range(20):  # warm up: bundle loaded, children started
                await run_to_end(senders[name][0], TEN, 0.001)
            await wait_idle(server.process.pid)
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        print(f"compute-worker serve x {len(backends)} ({', '.join(backends)}), SQLite WAL "
              f"synchronous=FULL; HTTP/1.1 raw client on {loop}, {args.connections} "
              f"connections, {args.seconds:g} s per load figure, {args.samples} runs per "
              f"latency, {args.repeat} rounds\n")  # fmt: skip
        results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for index in range(args.repeat):
            print(f"round {index + 1}", flush=True)
            for name in backends:
                pid = servers[name].process.pid
                for figure, value in (await one_round(name, senders[name], pid, args)).items():
                    results[name][figure].append(value)
        table(results, backends)
    finally:
        for connection in connections:
            connection.close()
        for server in servers.values():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
