"""Helpers for the engine tests: an all-scopes key, a thin public-API client that
deploys, triggers, waits and reads the World lane, and real server subprocesses.

Imported explicitly by ``test_engine.py`` and ``test_engine_crash.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

ENGINE_KEY = "engine-test-all-scopes-key-5c1d9e7a3b"  # 36 chars
ALL_SCOPES = [
    "trigger:write",
    "runs:read",
    "runs:write",
    "deploy:read",
    "deploy:write",
    "world:proxy",
    "admin",
]
ENGINE_SEED_KEYS = [{"key": ENGINE_KEY, "scopes": ALL_SCOPES, "name": "engine-tests"}]
TERMINAL = frozenset({"completed", "failed", "cancelled"})
REPO = Path(__file__).resolve().parents[2]
CLI = REPO / ".venv" / "bin" / "compute-worker"

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    within: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Poll ``probe`` until it returns neither None nor False, for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


def append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class EngineApi:
    """The public API and the World lane, as the tests use them."""

    def __init__(self, url: str, key: str = ENGINE_KEY, timeout: float = 20.0) -> None:
        self.url = url
        self.http = httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout),
        )

    async def __aenter__(self) -> EngineApi:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.aclose()

    @staticmethod
    def ok(response: httpx.Response, *statuses: int) -> Any:
        expected = statuses or (200,)
        assert response.status_code in expected, (response.status_code, response.text)
        return response.json()

    # -- public lane ----------------------------------------------------------------------

    async def deploy(self, source: str, *, activate: bool = True) -> str:
        body = {"kind": "python", "files": {"workflows.py": source}}
        created = self.ok(await self.http.post("/v1/deployments", json=body), 201)
        deployment_id: str = created["deploymentId"]
        if activate:
            active = self.ok(await self.http.post(f"/v1/deployments/{deployment_id}/activate"))
            assert active["active"] is True
        return deployment_id

    async def trigger(
        self, workflow: str, *args: Any, deployment_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"workflowName": workflow, "input": list(args)}
        if deployment_id is not None:
            body["deploymentId"] = deployment_id
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        run: dict[str, Any] = self.ok(
            await self.http.post("/v1/runs", json=body, headers=headers), 202
        )
        return run

    async def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.ok(await self.http.get(f"/v1/runs/{run_id}"))
        return found

    async def wait_status(
        self, run_id: str, statuses: frozenset[str] | set[str] = TERMINAL, within: float = 20.0
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            run = await self.run(run_id)
            return run if run["status"] in statuses else None

        return await eventually(probe, within, f"run {run_id} to reach {sorted(statuses)}")

    async def finished(self, run_id: str, within: float = 20.0) -> dict[str, Any]:
        return await self.wait_status(run_id, TERMINAL, within)

    async def cancel(self, run_id: str) -> httpx.Response:
        return await self.http.post(f"/v1/runs/{run_id}/cancel")

    async def resume(self, token: str, payload: Any, within: float = 10.0) -> dict[str, Any]:
        """Resume the hook holding ``token``, waiting for the workflow to have created it."""

        async def probe() -> dict[str, Any] | None:
            response = await self.http.post(
                "/v1/runs/resume", json={"token": token, "payload": payload}
            )
            if response.status_code == 404 and response.json().get("code") == "hook_not_found":
                return None
            accepted: dict[str, Any] = self.ok(response, 202)
            return accepted

        return await eventually(probe, within, f"a live hook with token {token!r}")

    # -- world lane -----------------------------------------------------------------------

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        return await self._all("/v1/world/events/list", {"runId": run_id})

    async def steps(self, run_id: str) -> list[dict[str, Any]]:
        return await self._all("/v1/world/steps/list", {"runId": run_id})

    async def steps_in_order(self, run_id: str) -> list[dict[str, Any]]:
        """The run's steps in the order the workflow created them (step ids are derived
        from call positions, so they do not sort by creation)."""
        created = [
            e["correlationId"]
            for e in await self.events(run_id)
            if e["eventType"] == "step_created"
        ]
        by_id = {s["stepId"]: s for s in await self.steps(run_id)}
        assert sorted(by_id) == sorted(created), (sorted(by_id), sorted(created))
        return [by_id[step_id] for step_id in created]

    async def hooks(self, run_id: str) -> list[dict[str, Any]]:
        return await self._all("/v1/world/hooks/list", {"runId": run_id})

    async def _all(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(1000):
            pagination: dict[str, Any] = {"limit": 1000}
            if cursor is not None:
                pagination["cursor"] = cursor
            page = self.ok(await self.http.post(path, json={**body, "pagination": pagination}))
            items.extend(page["data"])
            cursor = page["cursor"]
            if not page["hasMore"]:
                return items
        raise AssertionError(f"{path}: pagination did not end")

    async def wait_event(self, run_id: str, event_type: str, within: float = 10.0) -> None:
        async def probe() -> bool:
            return any(e["eventType"] == event_type for e in await self.events(run_id))

        await eventually(probe, within, f"a {event_type} event on {run_id}")


# -- server subprocesses ------------------------------------------------------------------


class ServerProcess:
    """``compute-worker serve`` in a child process; its URL is read from its stdout."""

    def __init__(self, args: list[str], log_dir: Path, name: str) -> None:
        self.args = args
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> ServerProcess:
        env = {
            **os.environ,
            "COMPUTE_WORKER_SEED_API_KEYS": json.dumps(ENGINE_SEED_KEYS),
            "PYTHONUNBUFFERED": "1",
        }
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [str(CLI), "serve", "--port", "0", "--worldcompute", "local", *self.args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
            )
        return self

    async def ready(self, within: float = 30.0) -> str:
        async def probe() -> str | None:
            assert self.process is not None
            for line in read_lines(self.stdout_path):
                if "listening on " in line:
                    return line.split("listening on ", 1)[1].strip()
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode}: {self.logs()[-3000:]}"
                )
            return None

        self.url = await eventually(probe, within, "the server to listen", interval=0.1)
        return self.url

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace")
            for p in (self.stdout_path, self.stderr_path)
            if p.exists()
        )

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Terminate (then kill) the child if it still runs; for ``finally`` blocks."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)
