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
from .readme import Shell, blocks, commands


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
        # as a user who activated the venv, with no profile of their own
        shell.env["PATH"] = f"{CLI.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        shell.env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
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
    _url, key, followed, logged = newcomer.run_block(blocks()["quickstart"])
    assert len(key) >= 43  # the dev key
    run_id = newcomer.seen["runId"]
    for shown in (
        f"started {run_id} hello",
        "step greet attempt 1 started",
        "sleeping until",
        "woke up",
        "step shout completed",
        f"run {run_id} completed",
        '"HELLO, YOU!"',
    ):
        assert shown in followed, (shown, followed)  # fmt: skip
    assert logged == "HELLO, YOU! "
    with _api(newcomer) as api:
        done = api.get(f"/v1/runs/{run_id}").json()
        assert (done["status"], done["output"]) == ("completed", "HELLO, YOU!"), done
    data = newcomer.cwd / "data"
    assert (data / "compute-worker.db").is_file()
    assert any((data / "artifacts").rglob("*.bundle"))


def _hook_appears(api: httpx.Client, run_id: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not api.get(f"/v1/runs/{run_id}/hooks").json()["data"]:
        assert time.monotonic() < deadline, f"run {run_id}'s hook never appeared"
        time.sleep(0.2)


def test_the_tutorial_deploys_triggers_watches_resumes_and_cancels(newcomer: Shell) -> None:
    readme = blocks()
    (newcomer.cwd / "shop").mkdir()
    (newcomer.cwd / "shop" / "workflows.py").write_text(readme["file shop/workflows.py"])
    *_, deployed = newcomer.run_block(readme["tutorial-deploy"])
    assert "workflow checkout" in deployed and "(active)" in deployed, deployed

    (triggered,) = newcomer.run_block(readme["tutorial-trigger"])
    run_id = newcomer.seen["runId"]
    assert f"started {run_id} checkout" in triggered, triggered
    (watch_line,) = commands(readme["tutorial-watch"])
    watch = newcomer.start(watch_line)
    with _api(newcomer) as api:
        _hook_appears(api, run_id)
        (resumed,) = newcomer.run_block(readme["tutorial-resume"])
        assert f"resumed {run_id}" in resumed, resumed
        watched = newcomer.finish(watch)
        for shown in (
            "step charge attempt 1 started",
            "sleeping until",
            "token approve:order-42",
            "step notify completed",
            f"run {run_id} completed",
            '"approved": true',
        ):
            assert shown in watched, (shown, watched)  # fmt: skip
        done = api.get(f"/v1/runs/{run_id}").json()
        assert done["output"]["decision"] == {"approved": True}, done
        assert done["output"]["receipt"]["order"] == "order-42"

        steps, logged, listed = newcomer.run_block(readme["tutorial-inspect"])
        assert steps.count("completed") == 3, steps  # charge, notify, notify
        assert sorted(logged.splitlines()) == ["notified a", "notified b"], logged
        assert run_id in listed and "completed" in listed, listed

        other, cancelled = newcomer.run_block(readme["tutorial-cancel"])
        other_id = newcomer.seen["runId"]
        assert other_id != run_id and f"started {other_id} checkout" in other, other
        assert f"cancelled {other_id}" in cancelled, cancelled
        assert api.get(f"/v1/runs/{other_id}").json()["status"] == "cancelled"


def test_the_tutorial_client_script_does_the_same_from_python(newcomer: Shell) -> None:
    readme = blocks()
    (newcomer.cwd / "shop").mkdir()
    (newcomer.cwd / "shop" / "workflows.py").write_text(readme["file shop/workflows.py"])
    (newcomer.cwd / "tutorial_client.py").write_text(readme["file tutorial_client.py"])
    newcomer.run_block(readme["tutorial-deploy"])  # its exports, and the deployment
    (printed,) = newcomer.run_block(readme["tutorial-client"])
    steps, output, *log = printed.splitlines()
    assert steps == "[('charge', 'completed')]", printed
    assert "'decision': {'approved': True}" in output and "'order-44'" in output, printed
    assert sorted(line for line in log if line) == ["notified a", "notified b"], printed
