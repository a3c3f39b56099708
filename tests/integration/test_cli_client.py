"""The user's side of the CLI (deploy, run, runs, deployments, hooks) run as a user runs
it: the real ``compute-worker`` in a subprocess, against a real server on a socket, the
URL and key given by flag, environment or profile file. Good paths and bad ones: bad
JSON is exit 2, an unreachable server exit 3, a failed or cancelled run exit 1."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Backend
from .public_fixtures import (
    ADMIN_KEY,
    CLI,
    ONLY_KEYS,
    SECOND_KEY,
    CliResult,
    PublicServer,
    PublicServers,
    cli_env,
    run_cli,
)

FLOWS = """\
import asyncio

from compute_worker import RetryableError, create_hook, get_writable, run_metadata, sleep
from compute_worker import start_workflow, step, workflow


@step
async def add(a, b):
    return a + b


@step(max_retries=3)
async def flaky(x):
    if run_metadata()["attempt"] < 2:
        raise RetryableError("not yet", retry_after=0.3)
    return x * 2


@step
async def say(text):
    out = get_writable("log")
    await out.write(f"{text}\\n".encode())
    await out.write(b"done\\n")
    return text


@workflow
async def adder(a, b):
    return await add(a, b)


@workflow
async def parent(n):
    child = await start_workflow("adder", n, n)
    return {"child": child.run_id, "sum": await child.result()}


@workflow
async def boom(message):
    raise ValueError(message)


@workflow
async def waits(token):
    return await create_hook(token=token)


@step(max_retries=1000, timeout=0.2)
async def hangs():
    await asyncio.sleep(60)


@workflow
async def keeps_timing_out():
    return await hangs()


@workflow
async def journey(x):
    doubled = await flaky(x)
    await sleep("1s")
    approval = await create_hook(token=f"go:{x}")
    await say(f"approved {approval}")
    return {"doubled": doubled, "approval": approval}
"""

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BAD_GRAPH = {
    "name": "broken",
    "nodes": [
        {"id": "t", "type": "trigger", "data": {}},
        {"id": "a", "type": "action", "data": {"actionType": "http_request"}},
        {"id": "b", "type": "action", "data": {"actionType": "no_such_action"}},
    ],
    "edges": [{"source": "t", "target": "a"}, {"source": "a", "target": "b"}],
}


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    """One SQLite file: what is tested is the command line, not the storage."""
    path = tmp_path / "world.db"
    return Backend("sqlite", {"sqlite_path": path}, ["--sqlite-path", str(path)])


@pytest.fixture
async def api_server(servers: PublicServers) -> PublicServer:
    return await servers.start(worldcompute="local")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty config folder, so that no real user's profile is read."""
    folder = tmp_path / "xdg"
    folder.mkdir()
    return folder


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "workflows.py").write_text(FLOWS)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "stale.pyc").write_bytes(b"\0not python")
    return folder


class Cli:
    """``compute-worker`` with the server's URL and key in the environment."""

    def __init__(self, server: PublicServer, home: Path, key: str = ADMIN_KEY) -> None:
        self.env = cli_env(
            COMPUTE_WORKER_URL=server.url, COMPUTE_WORKER_API_KEY=key, XDG_CONFIG_HOME=str(home),
            COLUMNS="200",
        )  # fmt: skip

    async def __call__(self, *args: str, within: float = 60) -> CliResult:
        return await run_cli(*args, env=self.env, within=within)

    async def ok(self, *args: str) -> CliResult:
        result = await self(*args)
        assert result.returncode == 0, result
        assert "Traceback" not in result.stderr, result
        return result

    async def json(self, *args: str) -> Any:
        lines = (await self.ok(*args, "--json")).json_lines()
        assert len(lines) == 1, lines
        return lines[0]

    async def fails(self, code: int, *args: str) -> CliResult:
        result = await self(*args)
        assert result.returncode == code, result
        assert result.stderr.startswith("compute-worker: "), result
        assert 'File "/' not in result.stderr, result  # no traceback of the CLI itself
        return result


@pytest.fixture
def cw(api_server: PublicServer, home: Path) -> Cli:
    return Cli(api_server, home)


@pytest.fixture
async def deployed(cw: Cli, flows: Path) -> dict[str, Any]:
    deployment: dict[str, Any] = await cw.json("deploy", str(flows), "--activate")
    return deployment


def _table(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.strip()]


# -- deploy and deployments ------------------------------------------------------------------


async def test_deploy_uploads_a_folder_and_activates_it(cw: Cli, flows: Path) -> None:
    shown = await cw.ok("deploy", str(flows), "--activate", "--metadata", '{"team": "shop"}')
    (deployment_id,) = re.findall(r"deployed (dpl_\w+) \(active\)", shown.stdout)
    for name in ("adder", "boom", "waits", "journey"):
        assert f"workflow {name}" in shown.stdout
    assert "team" in shown.stdout

    got = await cw.json("deployments", "get", deployment_id)
    assert got["active"] is True and got["kind"] == "python"
    assert got["metadata"] == {"team": "shop"}
    assert (await cw.json("deployments", "get", "active"))["deploymentId"] == deployment_id


async def test_deploy_without_activate_then_deployments_list_and_activate(
    cw: Cli, deployed: dict[str, Any], flows: Path
) -> None:
    (flows / "more.py").write_text("# a second version\n")
    second = await cw.json("deploy", str(flows))
    assert second["active"] is False and second["deploymentId"] != deployed["deploymentId"]

    listed = await cw.ok("deployments", "list")
    rows = _table(listed.stdout)
    assert rows[0][:3] == ["DEPLOYMENT", "KIND", "ACTIVE"]
    assert [row[0] for row in rows[1:]] == [second["deploymentId"], deployed["deploymentId"]]
    assert rows[2][2] == "yes" and rows[1][2] != "yes"

    back = await cw.json("deployments", "activate", deployed["deploymentId"])
    assert (back["deploymentId"], back["active"]) == (deployed["deploymentId"], True)
    activated = await cw.ok("deployments", "activate", second["deploymentId"])
    assert f"activated {second['deploymentId']} (active)" in activated.stdout
    found = (await cw.ok("deployments", "list", "--json", "--limit", "1")).json_lines()
    assert [(d["deploymentId"], d["active"]) for d in found] == [(second["deploymentId"], True)]


async def test_deploy_lists_every_problem_of_a_refused_bundle(cw: Cli, tmp_path: Path) -> None:
    graph = tmp_path / "graph"
    graph.mkdir()
    (graph / "workflow.json").write_text(json.dumps(BAD_GRAPH))
    refused = await cw.fails(1, "deploy", str(graph), "--kind", "graph")
    assert "the deployment was refused" in refused.stderr
    problems = [line for line in refused.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) >= 2, refused.stderr
    assert any("node a" in line and "url" in line for line in problems), problems
    assert any("node b" in line for line in problems), problems

    as_json = await cw("deploy", str(graph), "--kind", "graph", "--json")
    assert as_json.returncode == 1
    (error,) = as_json.json_lines()
    assert error["error"]["code"] == "invalid_deployment" and error["error"]["status"] == 422
    assert len(error["error"]["details"]["problems"]) == len(problems)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "workflows.py").write_text("import not_installed_anywhere\n")
    refused = await cw.fails(1, "deploy", str(broken))
    assert "not_installed_anywhere" in refused.stderr


async def test_a_graph_bundle_deploys_and_runs_to_its_hook(cw: Cli, tmp_path: Path) -> None:
    graph = tmp_path / "graph"
    graph.mkdir()
    (graph / "workflow.json").write_text((EXAMPLES / "graphs" / "approval.json").read_text())
    deployed = await cw.ok("deploy", str(graph), "--kind", "graph", "--activate")
    assert "kind graph" in deployed.stdout and "workflow approval" in deployed.stdout

    follow = asyncio.create_task(cw("run", "approval", "req-7", "200", "--follow"))
    while (await cw("hooks", "resume", "approval:req-7", "--payload", '{"approved": true, '
                    '"by": "ops"}')).returncode != 0:  # fmt: skip
        assert not follow.done(), follow.result()
        await asyncio.sleep(0.2)
    followed = await follow
    assert followed.returncode == 0, followed
    assert "token approval:req-7" in followed.stdout
    assert '"decision": "granted"' in followed.stdout


async def test_deploy_bad_paths_are_usage_errors(cw: Cli, tmp_path: Path) -> None:
    missing = await cw.fails(2, "deploy", str(tmp_path / "nowhere"))
    assert "does not exist" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no files" in (await cw.fails(2, "deploy", str(empty))).stderr
    (tmp_path / "notes.txt").write_text("hi")
    assert ".zip" in (await cw.fails(2, "deploy", str(tmp_path / "notes.txt"))).stderr
    bad = await cw.fails(2, "deploy", str(empty), "--metadata", "[1]")
    assert "--metadata must be a JSON object" in bad.stderr
    assert "--kind" in (await cw.fails(2, "deploy", str(empty), "--kind", "java")).stderr


# -- run --------------------------------------------------------------------------------------


async def test_run_wait_prints_the_output_and_runs_get_shows_the_run(
    cw: Cli, deployed: dict[str, Any]
) -> None:
    waited = await cw.ok("run", "adder", "2", "3", "--wait")
    (run_id,) = re.findall(r"started (wrun_\w+) adder", waited.stdout)
    assert re.search(rf"run {run_id} completed in [\d.]+ s\n5\n", waited.stdout), waited.stdout

    run = await cw.json("runs", "get", run_id)
    assert (run["status"], run["output"], run["input"]) == ("completed", 5, [2, 3])
    assert run["deploymentId"] == deployed["deploymentId"]
    shown = await cw.ok("runs", "get", run_id)
    assert re.search(r"status\s+completed", shown.stdout)
    assert re.search(r"output\s+5", shown.stdout)

    by_input = await cw.json("run", "adder", "--input", "[40, 2]", "--wait")
    assert (by_input["status"], by_input["output"]) == ("completed", 42)
    strings = await cw.json("run", "adder", '"ab"', "cd", "--wait")  # JSON, else a string
    assert strings["output"] == "abcd"


async def test_runs_get_links_a_parent_and_its_child(cw: Cli, deployed: dict[str, Any]) -> None:
    done = await cw.json("run", "parent", "4", "--wait")
    child_id = done["output"]["child"]
    assert done["output"]["sum"] == 8
    parent = await cw.ok("runs", "get", done["runId"])
    assert re.search(rf"child\s+{child_id} adder", parent.stdout), parent.stdout
    child = await cw.json("runs", "get", child_id)
    assert child["parentRunId"] == done["runId"] and child["output"] == 8
    assert re.search(rf"parent\s+{done['runId']}", (await cw.ok("runs", "get", child_id)).stdout)


async def test_run_without_wait_prints_the_new_run_and_keys_replay(
    cw: Cli, deployed: dict[str, Any]
) -> None:
    started = await cw.ok("run", "adder", "1", "1", "--idempotency-key", "k-1")
    (run_id,) = re.findall(r"started (wrun_\w+)", started.stdout)
    assert f"compute-worker runs watch {run_id}" in started.stdout
    again = await cw.json("run", "adder", "1", "1", "--idempotency-key", "k-1")
    assert again["runId"] == run_id
    replayed = await cw.ok("run", "adder", "1", "1", "--idempotency-key", "k-1")
    assert f"started {run_id}" in replayed.stdout and "earlier trigger" in replayed.stdout
    other = await cw.fails(1, "run", "adder", "1", "2", "--idempotency-key", "k-1")
    assert "idempotency_conflict" in other.stderr


async def test_a_failed_run_exits_1_with_its_error(cw: Cli, deployed: dict[str, Any]) -> None:
    failed = await cw.fails(1, "run", "boom", "kaput", "--wait")
    assert re.search(r"run wrun_\w+ failed: .*kaput", failed.stderr), failed.stderr
    assert "error: " in failed.stdout and "kaput" in failed.stdout

    as_json = await cw("run", "boom", "again", "--wait", "--json")
    assert as_json.returncode == 1
    (run,) = as_json.json_lines()
    assert run["status"] == "failed" and "again" in run["error"]["message"]

    unknown = await cw.fails(1, "run", "no_such_workflow")
    assert "workflow_not_found" in unknown.stderr and "adder" in unknown.stderr


async def test_run_timeout_exits_1_and_says_how_to_follow(
    cw: Cli, deployed: dict[str, Any]
) -> None:
    late = await cw.fails(1, "run", "waits", "t-late", "--wait", "--timeout", "0.5")
    assert re.search(r"run (wrun_\w+) is still (pending|running) after 0.5 s", late.stderr)
    assert "compute-worker runs watch wrun_" in late.stderr


async def test_bad_json_and_bad_flags_are_usage_errors(cw: Cli, deployed: dict[str, Any]) -> None:
    bad = await cw.fails(2, "run", "adder", "--input", "[1")
    assert (
        "--input is not valid JSON" in bad.stderr
        and "see 'compute-worker run --help'" in bad.stderr
    )
    assert "JSON list" in (await cw.fails(2, "run", "adder", "--input", '{"a": 1}')).stderr
    assert "not both" in (await cw.fails(2, "run", "adder", "1", "--input", "[1]")).stderr
    resume = await cw.fails(2, "hooks", "resume", "tok", "--payload", "{nope")
    assert "--payload is not valid JSON" in resume.stderr
    assert "--status" in (await cw.fails(2, "runs", "list", "--status", "done")).stderr
    assert "--timeout" in (await cw.fails(2, "run", "adder", "--wait", "--timeout", "0")).stderr
    listed = (await cw.ok("runs", "list", "--json")).json_lines()
    assert listed == []  # nothing was triggered by any of them


# -- the server out of reach, or refusing ------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_server_exits_3(home: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    env = cli_env(XDG_CONFIG_HOME=str(home))
    for args in (["runs", "list"], ["run", "adder", "1", "--wait"], ["deployments", "list"]):
        result = await run_cli(*args, "--url", url, "--api-key", "whatever-key", env=env)
        assert result.returncode == 3, result
        assert f"compute-worker: cannot reach the server at {url}" in result.stderr
        assert re.search(r"compute-worker: retrying (GET|POST) /v1/", result.stderr)  # each retry
        assert "Traceback" not in result.stderr
    as_json = await run_cli("runs", "get", "wrun_x", "--url", url, "--json", env=env)
    assert as_json.returncode == 3
    assert as_json.json_lines()[0]["error"]["message"].startswith("GET /v1/runs/wrun_x failed")


async def test_a_bad_key_or_a_missing_scope_exits_1_with_a_hint(
    api_server: PublicServer, home: Path
) -> None:
    stranger = Cli(api_server, home, key="not-a-key-at-all-0000000000")
    refused = await stranger.fails(1, "runs", "list")
    assert "401 unauthorized" in refused.stderr and "--api-key" in refused.stderr
    reader = Cli(api_server, home, key=ONLY_KEYS["runs:read"])
    denied = await reader.fails(1, "run", "adder", "1", "2")
    assert "403 forbidden" in denied.stderr and "lacks the scope trigger:write" in denied.stderr
    missing = await Cli(api_server, home).fails(1, "runs", "get", "wrun_01M80000000000000000000000")
    assert "run_not_found" in missing.stderr


# -- runs ----------------------------------------------------------------------------------------


async def test_runs_list_filters_and_shows_a_table(cw: Cli, deployed: dict[str, Any]) -> None:
    done = await cw.json("run", "adder", "1", "2", "--wait")
    failed = (await cw("run", "boom", "x", "--wait", "--json")).json_lines()[0]
    later = await cw.json("run", "adder", "3", "4", "--wait")

    table = _table((await cw.ok("runs", "list")).stdout)
    assert table[0] == ["RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION", "DEPLOYMENT"]
    assert [row[0] for row in table[1:]] == [later["runId"], failed["runId"], done["runId"]]
    assert [row[2] for row in table[1:]] == ["completed", "failed", "completed"]

    only_failed = (await cw.ok("runs", "list", "--status", "failed", "--json")).json_lines()
    assert [run["runId"] for run in only_failed] == [failed["runId"]]
    adders = (await cw.ok("runs", "list", "--workflow", "adder", "--json")).json_lines()
    assert [run["runId"] for run in adders] == [later["runId"], done["runId"]]
    two = await cw.ok("runs", "list", "--status", "completed", "--status", "failed", "--limit", "2")
    assert len(_table(two.stdout)) == 3
    none = await cw.ok("runs", "list", "--workflow", "journey")
    assert none.stdout.strip() == "no runs"
    by_deployment = await cw.ok("runs", "list", "--deployment", deployed["deploymentId"], "--json")
    assert len(by_deployment.json_lines()) == 3
    since = await cw.ok("runs", "list", "--since", "2999-01-01T00:00:00Z", "--json")
    assert since.json_lines() == []
    bad = await cw.fails(2, "runs", "list", "--since", "yesterday")
    assert "not an ISO-8601 time: 'yesterday'" in bad.stderr


async def test_runs_list_stuck_shows_why(servers: PublicServers, home: Path, flows: Path) -> None:
    server = await servers.start(worldcompute="local", stuck_after_seconds=1.0)
    cw = Cli(server, home)
    await cw.ok("deploy", str(flows), "--activate")
    stuck = await cw.json("run", "keeps_timing_out")
    fine = await cw.json("run", "waits", "t-fine")
    deadline = time.monotonic() + 30
    while not (await cw.ok("runs", "list", "--stuck", "--json")).json_lines():
        assert time.monotonic() < deadline, "the run was never found stuck"
        await asyncio.sleep(0.3)
    listed = _table((await cw.ok("runs", "list", "--stuck")).stdout)
    assert [row[:4] for row in listed[1:]] == [
        [stuck["runId"], "keeps_timing_out", "running", "(stuck:"]
    ]
    assert listed[1][4] == "step_retrying)"
    shown = await cw.ok("runs", "get", stuck["runId"])
    assert re.search(r"stuck\s+step_retrying since .*hangs", shown.stdout), shown.stdout
    others = (await cw.ok("runs", "list", "--not-stuck", "--json")).json_lines()
    assert [run["runId"] for run in others] == [fine["runId"]]


async def test_runs_steps_events_and_cancel(cw: Cli, deployed: dict[str, Any]) -> None:
    run = await cw.json("run", "adder", "5", "6", "--wait")
    steps = _table((await cw.ok("runs", "steps", run["runId"])).stdout)
    assert steps[0][:3] == ["STEP", "STATUS", "ATTEMPTS"]
    assert steps[1][:3] == ["add", "completed", "1"]
    (step,) = (await cw.ok("runs", "steps", run["runId"], "--json")).json_lines()
    assert step["output"] == 11

    events = (await cw.ok("runs", "events", run["runId"], "--json")).json_lines()
    kinds = [event["eventType"] for event in events]
    assert kinds[0] == "run_created" and kinds[-1] == "run_completed"
    assert "step_completed" in kinds
    table = await cw.ok("runs", "events", run["runId"])
    assert "run_completed" in table.stdout and "step_created" in table.stdout

    waiting = await cw.json("run", "waits", "t-cancel")
    cancelled = await cw.ok("runs", "cancel", waiting["runId"])
    assert f"cancelled {waiting['runId']}" in cancelled.stdout
    assert re.search(r"status\s+cancelled", cancelled.stdout)
    watched = await cw.fails(1, "runs", "watch", waiting["runId"])
    assert f"run {waiting['runId']} cancelled" in watched.stderr
    second = await cw.json("run", "waits", "t-cancel-2")
    cancelled_json = await cw.json("runs", "cancel", second["runId"])
    assert (cancelled_json["runId"], cancelled_json["status"]) == (second["runId"], "cancelled")
    again = await cw.fails(1, "runs", "cancel", run["runId"])
    assert "run_already_terminal" in again.stderr


async def test_run_follow_shows_attempts_sleeps_hooks_and_logs_stream_live(
    cw: Cli, deployed: dict[str, Any], api_server: PublicServer
) -> None:
    follow = asyncio.create_task(cw("run", "journey", "21", "--follow", within=90))
    run_id = await _first_run_waiting_on(api_server, "go:21")
    logs = asyncio.create_task(cw("runs", "logs", run_id, "--stream", "log", "--follow"))
    await asyncio.sleep(0.5)
    assert not logs.done()  # it waits for the stream the run has not written yet
    resumed = await cw.ok("hooks", "resume", "go:21", "--payload", '{"ok": true}')
    assert f"resumed {run_id}" in resumed.stdout

    followed = await follow
    assert followed.returncode == 0, followed
    out = followed.stdout
    for expected in (
        f"started {run_id} journey",
        "step flaky attempt 1 started",
        "step flaky attempt 1 failed: not yet, retry at ",
        "step flaky attempt 2 started",
        "step flaky completed",
        "sleeping until ",
        "woke up",
        "token go:21",
        "compute-worker hooks resume 'go:21' --payload JSON",
        "received a payload",
        "step say completed",
        "run completed",
        f"run {run_id} completed in",
        '"doubled": 42',
    ):
        assert expected in out, (expected, out)
    assert out.index("sleeping until") < out.index("token go:21") < out.index("step say")

    logged = await logs
    assert logged.returncode == 0, logged
    assert logged.stdout == "approved {'ok': True}\ndone\n"
    again = await cw.ok("runs", "logs", run_id)  # its only stream, without --stream
    assert again.stdout == logged.stdout
    chunks = (await cw.ok("runs", "logs", run_id, "--json")).json_lines()
    assert chunks == [{"index": 0, "text": "approved {'ok': True}\n"},
                      {"index": 1, "text": "done\n"}]  # fmt: skip
    assert (
        "no stream 'other'"
        in (await cw.fails(2, "runs", "logs", run_id, "--stream", "other")).stderr
    )

    watched = await cw.ok("runs", "watch", run_id, "--json")
    lines = watched.json_lines()
    assert lines[-1]["runId"] == run_id and lines[-1]["status"] == "completed"
    assert [line["eventType"] for line in lines[:-1]][-1] == "run_completed"


async def _first_run_waiting_on(server: PublicServer, token: str, within: float = 30) -> str:
    """The run holding a hook with ``token`` (seen through the public API)."""
    deadline = time.monotonic() + within
    async with server.client() as http:
        while time.monotonic() < deadline:
            for run in (await http.get("/v1/runs", params={"status": "running"})).json()["data"]:
                hooks = (await http.get(f"/v1/runs/{run['runId']}/hooks")).json()["data"]
                if any(hook.get("token") == token for hook in hooks):
                    return str(run["runId"])
            await asyncio.sleep(0.1)
    raise AssertionError(f"no run waits on {token!r} after {within} s")


async def test_a_watcher_whose_key_may_not_resume_sees_no_token(
    cw: Cli, deployed: dict[str, Any], api_server: PublicServer, home: Path
) -> None:
    reader = Cli(api_server, home, key=SECOND_KEY)  # trigger:write and runs:read only
    late = await reader.fails(1, "run", "waits", "secret-token-1", "--follow", "--timeout", "3")
    assert re.search(r"waiting on hook hook_\w+\n", late.stdout), late.stdout
    assert "secret-token-1" not in late.stdout and "hooks resume" not in late.stdout
    run_id = re.findall(r"started (wrun_\w+)", late.stdout)[0]
    watched = await cw.fails(1, "runs", "watch", run_id, "--timeout", "1")  # a runs:write key
    assert "token secret-token-1" in watched.stdout


async def test_runs_hooks_lists_what_a_run_waits_on(
    cw: Cli, deployed: dict[str, Any], api_server: PublicServer, home: Path
) -> None:
    run = await cw.json("run", "waits", "t-listed")
    deadline = time.monotonic() + 30
    while (
        listed := await cw.ok("runs", "hooks", run["runId"])
    ).stdout.strip() == "no hooks waiting":
        assert time.monotonic() < deadline, "the hook never appeared"
        await asyncio.sleep(0.2)
    rows = _table(listed.stdout)
    assert rows[0] == ["HOOK", "TOKEN", "CREATED", "METADATA"]
    assert rows[1][0].startswith("hook_") and rows[1][1] == "t-listed"
    reader = Cli(api_server, home, key=ONLY_KEYS["runs:read"])
    (hidden,) = (await reader.ok("runs", "hooks", run["runId"], "--json")).json_lines()
    assert hidden["hookId"] == rows[1][0] and "token" not in hidden
    assert "(needs runs:write)" in (await reader.ok("runs", "hooks", run["runId"])).stdout
    resumed = await cw.json("hooks", "resume", "t-listed", "--payload", "[1, 2]")
    assert resumed == {"runId": run["runId"], "hookId": rows[1][0], "token": "t-listed"}
    done = (await cw.ok("runs", "watch", run["runId"], "--json")).json_lines()[-1]
    assert (done["status"], done["output"]) == ("completed", [1, 2])


async def test_ctrl_c_stops_watching_and_says_the_run_goes_on(
    cw: Cli, deployed: dict[str, Any]
) -> None:
    run = await cw.json("run", "waits", "t-interrupted")
    process = await asyncio.create_subprocess_exec(
        CLI, "runs", "watch", run["runId"], env=cw.env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(60):
        while b"waiting on hook" not in await process.stdout.readline():
            pass
        process.send_signal(signal.SIGINT)
        _, stderr = await process.communicate()
    assert process.returncode == 1
    assert f"stopped waiting; run {run['runId']} goes on" in stderr.decode(), stderr
    assert (await cw.json("runs", "get", run["runId"]))["status"] == "running"


async def test_hooks_resume_of_an_unknown_token_exits_1(cw: Cli, deployed: dict[str, Any]) -> None:
    unknown = await cw.fails(1, "hooks", "resume", "nobody-holds-this", "--payload", "1")
    assert "hook_not_found" in unknown.stderr


# -- where the URL and key come from --------------------------------------------------------------


async def test_flags_beat_the_environment_and_profiles_fill_in(
    api_server: PublicServer, home: Path, tmp_path: Path
) -> None:
    env = cli_env(XDG_CONFIG_HOME=str(home))
    closed = f"http://127.0.0.1:{_closed_port()}"
    by_flags = await run_cli(
        "runs", "list", "--url", api_server.url, "--api-key", ADMIN_KEY, "--json",
        env={**env, "COMPUTE_WORKER_URL": closed, "COMPUTE_WORKER_API_KEY": "wrong-key"},
    )  # fmt: skip
    assert by_flags.returncode == 0, by_flags

    (home / "compute-worker").mkdir()
    key_file = tmp_path / "key"
    key_file.write_text(ADMIN_KEY + "\n")
    (home / "compute-worker" / "config.toml").write_text(
        f'[default]\nurl = "{api_server.url}"\napi_key = "{ADMIN_KEY}"\n\n'
        f'[broken]\nurl = "{closed}"\napi_key_file = "{key_file}"\n'
    )
    by_profile = await run_cli("runs", "list", "--json", env=env)
    assert by_profile.returncode == 0, by_profile
    named = await run_cli("runs", "list", "--profile", "broken", env=env)
    assert named.returncode == 3 and closed in named.stderr and "'broken'" in named.stderr
    chosen = await run_cli("runs", "list", env={**env, "COMPUTE_WORKER_PROFILE": "broken"})
    assert chosen.returncode == 3
    overridden = await run_cli("runs", "list", "--profile", "broken", "--url", api_server.url,
                               env=env)  # fmt: skip
    assert overridden.returncode == 0, overridden  # the key from its api_key_file

    for bad_url in ("localhost:8080", "http://", "ftp://host"):
        refused = await run_cli("runs", "list", "--url", bad_url, env=env)
        assert refused.returncode == 2 and "is not an http:// or https:// URL" in refused.stderr
    by_env = await run_cli("runs", "list", env={**env, "COMPUTE_WORKER_URL": "127.0.0.1:1"})
    assert by_env.returncode == 2 and "(from COMPUTE_WORKER_URL)" in by_env.stderr

    absent = await run_cli("runs", "list", "--profile", "nope", env=env)
    assert absent.returncode == 2 and "no profile 'nope'" in absent.stderr
    assert "broken, default" in absent.stderr
    other = tmp_path / "other.toml"
    other.write_text("[default\nurl=")
    unreadable = await run_cli("runs", "list", env={**env, "COMPUTE_WORKER_CONFIG": str(other)})
    assert unreadable.returncode == 2 and "cannot read the config file" in unreadable.stderr
    other.write_text('[default]\nurl = "x"\npassword = "y"\n')
    wrong = await run_cli("runs", "list", env={**env, "COMPUTE_WORKER_CONFIG": str(other)})
    assert wrong.returncode == 2 and "expected a table of the strings" in wrong.stderr


async def test_deploy_shows_a_progress_bar_on_a_terminal(cw: Cli, flows: Path) -> None:
    """stderr a terminal (a pseudo-terminal here): the upload's progress bar is drawn."""
    (flows / "data.bin").write_bytes(os.urandom(300_000))  # a few pieces of 64 KiB
    leader, follower = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            CLI, "deploy", str(flows), env={**cw.env, "TERM": "xterm"},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=follower,
        )  # fmt: skip
        os.close(follower)
        drawn = bytearray()
        reading = asyncio.get_running_loop().run_in_executor(None, _read_all, leader, drawn)
        stdout, _ = await asyncio.wait_for(process.communicate(), 60)
        await asyncio.wait_for(reading, 10)
    finally:
        os.close(leader)
    assert process.returncode == 0, (stdout, drawn)
    text = drawn.decode(errors="replace")
    assert "uploading flows" in text and re.search(r"(\d+\.\d)/\1 kB", text), text  # all sent
    assert re.search(rb"deployed dpl_\w+", stdout), stdout


def _read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            piece = os.read(fd, 4096)
        except OSError:  # the other side closed (EIO)
            return
        if not piece:
            return
        into.extend(piece)


async def test_help_shows_each_command_and_the_connection_flags_last(home: Path) -> None:
    env = cli_env(XDG_CONFIG_HOME=str(home))
    top = await run_cli("--help", env=env)
    for command in ("deploy", "deployments", "run", "runs", "hooks"):
        assert re.search(rf"^  {command}\s", top.stdout, re.M), top.stdout
    runs = await run_cli("runs", "--help", env=env)
    for command in ("cancel", "events", "get", "hooks", "list", "logs", "steps", "watch"):
        assert re.search(rf"^  {command}\s", runs.stdout, re.M), runs.stdout
    shown = await run_cli("runs", "list", "--help", env=env)
    text = " ".join(shown.stdout.split())
    for flag in ("--status", "--workflow", "--deployment", "--since", "--limit", "--stuck"):
        assert f"{flag} " in text, flag
    assert text.index("--limit") < text.index("--url") < text.index("--json")
    assert "env: COMPUTE_WORKER_URL" in text and "env: COMPUTE_WORKER_API_KEY" in text
    assert "env: COMPUTE_WORKER_PROFILE" in text
