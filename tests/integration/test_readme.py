"""The README, followed as a new user follows it: from an empty directory, ``serve --dev``
with no path options (what ``make run`` starts), the quickstart's demo run, then the
tutorial — write the workflow, deploy it with the README's own command, trigger it,
resume it, cancel another. The commands come from the README itself (``readme.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .engine_fixtures import CLI, read_lines
from .readme import Shell, blocks


@pytest.fixture
def newcomer(tmp_path: Path) -> Iterator[Shell]:
    """``compute-worker serve --dev`` started in an empty directory, as ``make run`` does."""
    home = tmp_path / "fresh"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTE_WORKER_")}
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        server = subprocess.Popen(
            [str(CLI), "serve", "--dev", "--port", "0"],
            cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    try:
        url = _listening(server, out, err)
        shell = Shell(home, int(url.rsplit(":", 1)[1]))
        yield shell
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0, err.read_text()[-3000:]


def _listening(server: subprocess.Popen[bytes], out: Path, err: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = read_lines(out)
        url = next((line.split("listening on ", 1)[1] for line in lines if "listening on " in line),
                   None)  # fmt: skip
        if url and any("demo deployment" in line or "active deployment" in line for line in lines):
            return url.strip()
        if server.poll() is not None:
            raise AssertionError(f"serve exited {server.returncode}: {err.read_text()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"serve did not start: {err.read_text()[-3000:]}")


def _api(shell: Shell) -> httpx.Client:
    key = (shell.cwd / "data" / "dev-api-key").read_text().strip()
    return httpx.Client(base_url=f"http://127.0.0.1:{shell.port}",
                        headers={"Authorization": f"Bearer {key}"}, timeout=20)  # fmt: skip


def _wait(api: httpx.Client, run_id: str, statuses: set[str], within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while True:
        run = api.get(f"/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}: {run}"
        time.sleep(0.2)


def _answer(output: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(output)
    return answer


def test_the_quickstart_runs_the_demo_to_completion(newcomer: Shell) -> None:
    first, triggered, fetched = newcomer.run_block(blocks()["quickstart"])
    assert len(first) >= 43  # the dev key
    run = _answer(triggered)
    assert run["status"] == "pending" and run["workflowName"] == "hello", run
    assert _answer(fetched)["runId"] == run["runId"]
    with _api(newcomer) as api:
        done = _wait(api, run["runId"], {"completed", "failed", "cancelled"})
        assert done["status"] == "completed", done
        assert done["output"] == "HELLO, YOU!"
        streams = api.get("/v1/world/streams/list", params={"runId": run["runId"]}).json()
        (name,) = streams["streams"]
        read = api.get("/v1/world/streams/read", params={"name": name})  # ends: closed
        assert read.content == b"HELLO, YOU! "
    data = newcomer.cwd / "data"
    assert (data / "compute-worker.db").is_file()
    assert any((data / "artifacts").rglob("*.bundle"))


def test_the_tutorial_deploys_triggers_resumes_and_cancels(newcomer: Shell) -> None:
    readme = blocks()
    (newcomer.cwd / "workflows.py").write_text(readme["file workflows.py"])
    newcomer.run("KEY=$(cat data/dev-api-key)")
    created, activated = newcomer.run_block(readme["tutorial-deploy"])
    assert _answer(created)["workflows"][0]["name"] == "checkout", created
    assert _answer(activated)["active"] is True, activated

    (triggered,) = newcomer.run_block(readme["tutorial-trigger"])
    run = _answer(triggered)
    assert run["workflowName"] == "checkout", run
    with _api(newcomer) as api:
        deadline = time.monotonic() + 60
        while not api.post("/v1/world/hooks/list", json={"runId": run["runId"]}).json()["data"]:
            assert time.monotonic() < deadline, "the tutorial's hook never appeared"
            time.sleep(0.2)
        (resumed,) = newcomer.run_block(readme["tutorial-resume"])
        assert _answer(resumed)["runId"] == run["runId"], resumed
        done = _wait(api, run["runId"], {"completed", "failed"})
        assert done["status"] == "completed", done
        assert done["output"]["decision"] == {"approved": True}
        assert done["output"]["receipt"]["order"] == "order-42"

        other, cancelled = newcomer.run_block(readme["tutorial-cancel"])
        assert _answer(cancelled)["status"] == "cancelled", cancelled
        assert _answer(cancelled)["runId"] == _answer(other)["runId"]
        assert api.get(f"/v1/runs/{_answer(other)['runId']}").json()["status"] == "cancelled"
