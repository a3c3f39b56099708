"""Hostile workflow code in the process backend's sandbox (bubblewrap): it cannot read
the server's secrets (dev key, encryption key, database, the server's /proc), write
outside its scratch dir, reach the worker's port or the internet (unless the network is
shared) or see other processes; its run gets a clear outcome and the server lives.
Where the host cannot sandbox, the worker says so, and refuses when told to require it.
Real servers, real child processes."""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from compute_worker import StartupError, start_compute_worker_server
from compute_worker.adapters.worldcompute.bundles.sandbox import sandbox_unavailable

from .engine_fixtures import CLI, ENGINE_SEED_KEYS, EngineApi, eventually

UNAVAILABLE = sandbox_unavailable(None, shutil.which("bwrap"))
boxed = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no sandbox here: {UNAVAILABLE}")

HOSTILE = """
import os
import socket
from compute_worker import step, workflow


def _outcome(action):
    try:
        action()
    except Exception as error:
        return type(error).__name__
    return "ok"


def _read(path):
    with open(path, "rb") as f:
        f.read(1)


def _write(path):
    with open(path, "w") as f:
        f.write("x")


def _connect(host, port):
    with socket.create_connection((host, port), timeout=3):
        pass


@step
async def attack(paths, port):
    found = {name: _outcome(lambda p=path: _read(p)) for name, path in paths.items()}
    found["writeData"] = _outcome(lambda: _write(os.path.join(paths["dataDir"], "planted")))
    found["writeBundle"] = _outcome(lambda: _write("planted.py"))
    found["writeScratch"] = _outcome(lambda: _write("/tmp/scratch"))
    found["bundles"] = _outcome(lambda: os.listdir(os.path.join(paths["dataDir"], "artifacts")))
    found["etcHosts"] = _outcome(lambda: _read("/etc/hosts"))  # name resolution works
    found["workerPort"] = _outcome(lambda: _connect("127.0.0.1", port))
    found["internet"] = _outcome(lambda: _connect("1.1.1.1", 53))
    found["uid"] = os.getuid()
    found["processes"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    found["env"] = sorted(n for n in os.environ if "COMPUTE_WORKER" in n or "DATABASE" in n)
    return found


@workflow
async def hostile(paths, port):
    return await attack(paths, port)


@workflow
async def blocks():
    import time
    open("/tmp/blocking", "w").close()  # in its scratch dir: the test looks in
    time.sleep(1e5)


@workflow
async def trivial(x):
    return x


@step
async def egress(allowed, denied):
    import urllib.request
    import httpx
    out = {}
    async with httpx.AsyncClient(timeout=10) as client:  # HTTP(S)_PROXY from the box
        out["allowed"] = (await client.get(allowed)).text
        out["denied"] = (await client.get(denied)).status_code
        try:
            await client.get("https://example.com/")
            out["https"] = "ok"
        except httpx.ProxyError:
            out["https"] = "ProxyError"
    out["urllib"] = urllib.request.urlopen(allowed, timeout=10).read().decode()
    out["direct"] = _outcome(lambda: _connect("1.1.1.1", 53))
    return out


@workflow
async def reaches(allowed, denied):
    return await egress(allowed, denied)


@step
async def steal(path):
    return open(path).read()


@workflow
async def thief(path):
    return await steal(path)
"""

SECRETS = ("dev-api-key", "encryption.key", "compute-worker.db")


async def _serve(tmp_path: Path, **options: Any) -> Any:
    return await asyncio.wait_for(
        start_compute_worker_server(
            data_dir=tmp_path / "data", port=0, seed_api_keys=ENGINE_SEED_KEYS,
            worldcompute="process", process_memory_mb=512, **options,
        ),
        30,
    )  # fmt: skip


@pytest.fixture
async def boxed_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[EngineApi]:
    handle = await _serve(tmp_path, sandbox="required", sandbox_network=request.param)
    try:
        async with EngineApi(handle.url) as client:
            await client.deploy(HOSTILE)
            yield client
    finally:
        await asyncio.wait_for(handle.close(), 30)


def _targets(data: Path) -> dict[str, str]:
    (data / "dev-api-key").write_text("cwk_planted-admin-key")  # as serve --dev leaves it
    (data / "dev-api-key").chmod(0o600)
    paths = {name: str(data / name) for name in SECRETS}
    paths["dataDir"] = str(data)
    paths["serverEnviron"] = f"/proc/{os.getpid()}/environ"
    paths["serverCmdline"] = f"/proc/{os.getpid()}/cmdline"
    paths["hostShadow"] = "/etc/shadow"
    return paths


@boxed
@pytest.mark.parametrize("boxed_api", ["none", "host"], indirect=True)
async def test_hostile_code_reads_no_secret_writes_only_scratch_and_has_no_network(
    boxed_api: EngineApi, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    network = request.node.callspec.params["boxed_api"]
    port = urlsplit(boxed_api.url).port
    run = await boxed_api.trigger("hostile", _targets(tmp_path / "data"), port)
    done = await boxed_api.finished(run["runId"], 60)
    assert done["status"] == "completed", done
    found = done["output"]
    for name in (*SECRETS, "dataDir", "serverEnviron", "serverCmdline", "hostShadow"):
        assert found[name] in ("FileNotFoundError", "PermissionError"), (name, found)
    assert found["writeData"] in ("FileNotFoundError", "PermissionError", "OSError"), found
    assert found["writeBundle"] == "OSError", found  # a read-only file system
    assert found["writeScratch"] == "ok"
    assert found["etcHosts"] == "ok"
    assert found["bundles"] == "FileNotFoundError"  # other bundles (and its own, there)
    assert (tmp_path / "data" / "artifacts").is_dir()
    if network == "none":
        assert found["workerPort"] == "ConnectionRefusedError", found  # its own loopback
        assert found["internet"] == "OSError", found  # network unreachable
    else:
        assert found["workerPort"] == "ok", found
    if os.geteuid() == 0:
        assert found["uid"] == 65534
    assert found["processes"] <= 3  # bwrap's init and the child: none of the server's
    assert found["env"] == []
    assert not (tmp_path / "data" / "planted").exists()
    assert (await boxed_api.http.get("/v1/health")).status_code == 200


@boxed
@pytest.mark.parametrize("boxed_api", ["none"], indirect=True)
async def test_a_step_that_reads_the_encryption_key_fails_clearly(
    boxed_api: EngineApi, tmp_path: Path
) -> None:
    run = await boxed_api.trigger("thief", str(tmp_path / "data" / "encryption.key"))
    failed = await boxed_api.finished(run["runId"], 60)
    assert failed["status"] == "failed", failed
    assert "No such file or directory" in failed["error"]["message"], failed["error"]
    assert "encryption.key" in failed["error"]["message"]
    assert (await boxed_api.http.get("/v1/health")).status_code == 200


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from an allowed host"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@boxed
async def test_the_allow_list_network_reaches_only_the_allowed_hosts(tmp_path: Path) -> None:
    hello = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=hello.serve_forever, daemon=True).start()
    port = hello.server_address[1]
    handle = await _serve(tmp_path, sandbox="required", sandbox_network="allow-list",
                          sandbox_allow=f"127.0.0.1:{port}")  # fmt: skip
    try:
        async with EngineApi(handle.url) as api:
            await api.deploy(HOSTILE)
            allowed = f"http://127.0.0.1:{port}/"
            denied = f"{handle.url}/v1/health"  # the worker's own port: not in the list
            run = await api.trigger("reaches", allowed, denied)
            done = await api.finished(run["runId"], 60)
    finally:
        await asyncio.wait_for(handle.close(), 30)
        hello.shutdown()
        hello.server_close()
    assert done["status"] == "completed", done
    assert done["output"] == {
        "allowed": "hello from an allowed host",
        "denied": 403,
        "https": "ProxyError",
        "urllib": "hello from an allowed host",
        "direct": "OSError",
    }


def _boxed_processes(marker: str) -> set[int]:
    """The processes of the sessions whose bwrap command line names ``marker``."""
    sessions, members = set(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] == "Z":
            continue
        members[int(entry.name)] = int(stat[3])
        bwrap = cmdline.startswith(b"bwrap") or b"/bwrap\0" in cmdline
        if bwrap and marker.encode() in cmdline:
            sessions.add(int(entry.name))
    return {pid for pid, session in members.items() if session in sessions}


@boxed
async def test_cancel_kills_every_process_of_the_box_at_once(tmp_path: Path) -> None:
    handle = await _serve(tmp_path, sandbox="required", process_children=1)
    try:
        async with EngineApi(handle.url) as api:
            await api.deploy(HOSTILE)
            run = await api.trigger("blocks")

            async def boxed_and_running() -> set[int] | None:
                found = _boxed_processes(str(tmp_path))
                return found if len(found) >= 3 else None  # bwrap, its init, the child

            pids = await eventually(boxed_and_running, 30, "the sandboxed child")

            def marked() -> bool:  # seen through the box's root, from outside
                return any(os.path.exists(f"/proc/{pid}/root/tmp/blocking") for pid in pids)

            async def blocking() -> bool:
                return await asyncio.to_thread(marked)

            await eventually(blocking, 30, "the workflow body to block")
            assert (await api.cancel(run["runId"])).status_code == 200

            async def gone() -> bool:
                return not _boxed_processes(str(tmp_path))

            await eventually(gone, 5, f"the box's processes {sorted(pids)} to be killed")
            done = await api.finished((await api.trigger("trivial", 7))["runId"], 30)
            assert done["output"] == 7
    finally:
        await asyncio.wait_for(handle.close(), 30)


@boxed
@pytest.mark.parametrize("boxed_api", ["none"], indirect=True)
async def test_the_upload_check_imports_a_bundle_in_the_box(
    boxed_api: EngineApi, tmp_path: Path
) -> None:
    key = tmp_path / "data" / "encryption.key"
    assert key.exists()
    source = f"SECRET = open({str(key)!r}, 'rb').read()  # at import: the upload check\n"
    body = {"kind": "python", "files": {"workflows.py": source}}
    response = await boxed_api.http.post("/v1/deployments", json=body)
    assert response.status_code == 422, response.text
    assert "No such file or directory" in response.json()["message"]
    assert (await boxed_api.http.get("/v1/health")).status_code == 200


def _path_without_bwrap(tmp_path: Path) -> str:
    bare = tmp_path / "bin"
    bare.mkdir(exist_ok=True)
    return str(bare)


async def test_required_without_bwrap_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))
    with pytest.raises(StartupError) as raised:
        await _serve(tmp_path, sandbox="required")
    message = str(raised.value)
    assert "cannot be sandboxed" in message and "bubblewrap" in message
    assert "sandbox=off" in message


async def test_auto_without_bwrap_warns_and_runs_unboxed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))
    caplog.set_level(logging.WARNING)
    handle = await _serve(tmp_path, sandbox="auto")
    try:
        assert any("WITHOUT a sandbox" in r.getMessage() for r in caplog.records)
    finally:
        await asyncio.wait_for(handle.close(), 30)


async def test_serve_without_dev_refuses_an_unboxable_host(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": _path_without_bwrap(tmp_path)}
    args = [str(CLI), "serve", "--worldcompute", "process", "--port", "0",
            "--data-dir", str(tmp_path / "data")]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, args, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "cannot be sandboxed" in done.stderr, done.stderr[-2000:]
