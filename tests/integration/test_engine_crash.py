"""kill -9 and restart: real ``compute-worker serve`` processes lose their in-flight
work mid-run; every accepted run still finishes, and no step whose completion was
recorded runs again (steps are at-least-once, their results recorded once)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .engine_fixtures import EngineApi, ServerProcess, eventually, read_lines

STEPS = 5
RUNS = 20
RECOVERY_TIMEOUT = 60.0  # leases run out after ~10 s, the recovery scan runs every 2 s

CRASH_WORKFLOWS = """
import asyncio
import os

from compute_worker import run_metadata, step, workflow


@step
async def work(path, index, tag_pid):
    line = f"{run_metadata()['run_id']} {index}"
    if tag_pid:
        line += f" {os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)
    await asyncio.sleep(0.05)
    return index * 10


@workflow
async def five(path, tag_pid):
    results = []
    for index in range(5):
        results.append(await work(path, index, tag_pid))
    return results
"""
EXPECTED_OUTPUT = [index * 10 for index in range(STEPS)]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def line_counts(path: Path) -> Counter[tuple[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    for line in read_lines(path):
        run_id, index, *_ = line.split()
        counts[(run_id, int(index))] += 1
    return counts


async def wait_lines(path: Path, at_least: int, within: float = 30.0) -> None:
    async def probe() -> bool:
        return len(read_lines(path)) >= at_least

    await eventually(probe, within, f"{at_least} step lines in {path.name}")


async def all_completed(api: EngineApi, run_ids: list[str]) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        runs = [await api.run(run_id) for run_id in run_ids]
        if any(run["status"] in ("failed", "cancelled") for run in runs):
            raise AssertionError([r for r in runs if r["status"] in ("failed", "cancelled")])
        return runs if all(run["status"] == "completed" for run in runs) else None

    return await eventually(probe, RECOVERY_TIMEOUT, "every run to complete", interval=0.5)


async def check_steps(
    api: EngineApi, run_ids: list[str], lines: Path, old_world_before: datetime | None
) -> tuple[int, int]:
    """Check the at-least-once / recorded-once bounds for every run.

    ``old_world_before``: events created before this moment were written by the
    killed process; a step whose ``step_completed`` is among them must have run once.
    Returns (steps completed before the kill, steps that ran twice)."""
    counts = line_counts(lines)
    completed_before_kill = 0
    duplicated = 0
    for run_id in run_ids:
        steps = await api.steps(run_id)
        assert len(steps) == STEPS, (run_id, steps)
        assert all(s["status"] == "completed" for s in steps), steps
        by_index = {s["input"][1]: s for s in steps}
        assert sorted(by_index) == list(range(STEPS))
        for index, step_row in by_index.items():
            assert step_row["output"] == index * 10
            ran = counts[(run_id, index)]
            assert ran >= 1, f"{run_id} step {index} completed without running"
            assert ran <= 2, f"{run_id} step {index} ran {ran} times"
            # every execution of the step's code followed a recorded step_started
            assert ran <= step_row["attempt"], (run_id, index, ran, step_row["attempt"])
        extra = sum(counts[(run_id, index)] for index in range(STEPS)) - STEPS
        assert extra <= 1, f"{run_id}: {extra} extra step executions (one step was in flight)"
        duplicated += extra

        if old_world_before is not None:
            events = await api.events(run_id)
            for event in events:
                if event["eventType"] != "step_completed":
                    continue
                if when(event["createdAt"]) >= old_world_before:
                    continue
                index = next(s["input"][1] for s in steps if s["stepId"] == event["correlationId"])
                completed_before_kill += 1
                assert counts[(run_id, index)] == 1, (
                    f"{run_id} step {index} completed before the kill and ran again"
                )
    return completed_before_kill, duplicated


async def test_kill_9_and_restart_on_sqlite_finishes_every_run(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    database = tmp_path / "crash.db"
    lines = tmp_path / "steps.txt"
    args = ["--data-dir", str(data_dir), "--sqlite-path", str(database)]
    first = ServerProcess(args, tmp_path, "first")
    second = ServerProcess(args, tmp_path, "second")
    try:
        first.start()
        async with EngineApi(await first.ready()) as api:
            await api.deploy(CRASH_WORKFLOWS)
            runs = await asyncio.wait_for(
                asyncio.gather(*(api.trigger("five", str(lines), False) for _ in range(RUNS))),
                30,
            )
            run_ids = [run["runId"] for run in runs]
            await wait_lines(lines, RUNS + RUNS // 2)
        first.kill9()
        killed_lines = len(read_lines(lines))
        assert killed_lines < RUNS * STEPS, "every step ran before the kill: nothing to recover"

        restarted_at = datetime.now(UTC)
        second.start()
        async with EngineApi(await second.ready()) as api:
            finished = await all_completed(api, run_ids)
            assert [run["output"] for run in finished] == [EXPECTED_OUTPUT] * RUNS
            before, duplicated = await check_steps(api, run_ids, lines, restarted_at)
            print(
                f"killed after {killed_lines} step lines; {before} completions recorded "
                f"before the kill; {duplicated} steps ran twice"
            )
            assert before > 0, "no step completion was recorded before the kill"
            assert len(read_lines(lines)) == RUNS * STEPS + duplicated
    except BaseException:
        print("first server:\n", first.logs()[-5000:], "\nsecond server:\n", second.logs()[-5000:])
        raise
    finally:
        first.stop()
        second.stop()


@pytest.mark.postgres
async def test_two_workers_on_postgres_survive_the_death_of_one(
    tmp_path: Path, postgres_url: str
) -> None:
    lines = tmp_path / "steps.txt"
    artifacts = tmp_path / "artifacts"
    workers = [
        ServerProcess(
            [
                "--data-dir",
                str(tmp_path / f"data-{name}"),
                "--artifact-dir",
                str(artifacts),
                "--database-url",
                postgres_url,
            ],
            tmp_path,
            name,
        )
        for name in ("alpha", "beta")
    ]
    try:
        for worker in workers:
            worker.start()
        urls = [await worker.ready() for worker in workers]
        async with EngineApi(urls[0]) as alpha, EngineApi(urls[1]) as beta:
            await alpha.deploy(CRASH_WORKFLOWS)
            triggers = [
                (alpha if n % 2 == 0 else beta).trigger("five", str(lines), True)
                for n in range(RUNS)
            ]
            runs = await asyncio.wait_for(asyncio.gather(*triggers), 30)
            run_ids = [run["runId"] for run in runs]
            await wait_lines(lines, RUNS + RUNS // 2)

            # the victim: the worker whose steps were the last to run for the most unfinished runs
            last: dict[str, tuple[int, int]] = {}
            for line in read_lines(lines):
                run_id, index, pid = line.split()
                last[run_id] = (int(index), int(pid))
            in_flight = Counter(pid for index, pid in last.values() if index < STEPS - 1)
            assert in_flight, "every run finished before the kill"
            victim_pid = in_flight.most_common(1)[0][0]
            victim = next(w for w in workers if w.pid == victim_pid)
            survivor = next(w for w in workers if w is not victim)
            victim.kill9()
            killed_at = datetime.now(UTC)
            victim_runs = {
                run_id
                for run_id, (index, pid) in last.items()
                if pid == victim_pid and index < STEPS - 1
            }

        async with EngineApi(survivor.url) as api:
            started = time.monotonic()
            finished = await all_completed(api, run_ids)
            recovered_in = time.monotonic() - started
            assert [run["output"] for run in finished] == [EXPECTED_OUTPUT] * RUNS
            before, duplicated = await check_steps(api, run_ids, lines, killed_at)
            print(
                f"killed {len(victim_runs)} in-flight runs; recovered in {recovered_in:.1f}s; "
                f"{before} completions before the kill; {duplicated} steps ran twice"
            )

        pids_by_run: dict[str, set[int]] = {}
        for line in read_lines(lines):
            run_id, _, pid = line.split()
            pids_by_run.setdefault(run_id, set()).add(int(pid))
        taken_over = {run_id for run_id in victim_runs if survivor.pid in pids_by_run[run_id]}
        assert taken_over == victim_runs, (victim_runs, pids_by_run)
        assert recovered_in < RECOVERY_TIMEOUT
    except BaseException:
        for worker in workers:
            print(f"{worker.stdout_path.stem}:\n", worker.logs()[-5000:])
        raise
    finally:
        for worker in workers:
            worker.stop()
