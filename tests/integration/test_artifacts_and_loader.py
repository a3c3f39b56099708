"""The artifact store on a real filesystem and the bundle loader with real processes."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from compute_worker.adapters.bundles import bundle_digest
from compute_worker.adapters.fs.artifact_store import FsArtifactStore
from compute_worker.adapters.worldcompute.bundles.loader import SubprocessBundleLoader
from compute_worker.domain import errors
from compute_worker.domain.deployments import WorkflowInfo

BUNDLE = {"workflows.py": b"x = 1\n", "pkg/util.py": b"", "data/big.bin": bytes(range(256)) * 64}
AUTHORING = "from compute_worker import step, workflow\n"


def leftovers(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def bundle_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the loader's temporary folders go, so a test can see them removed."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# --- FsArtifactStore ----------------------------------------------------------------


async def test_put_twice_stores_one_file_under_one_digest(tmp_path: Path) -> None:
    store = FsArtifactStore(tmp_path / "artifacts")
    first = await store.put(BUNDLE)
    second = await store.put(dict(reversed(list(BUNDLE.items()))))
    assert first == second == bundle_digest(BUNDLE)
    hex_digest = first.removeprefix("sha256:")
    assert bundle_files(tmp_path / "artifacts") == [
        tmp_path / "artifacts" / "sha256" / hex_digest[:2] / f"{hex_digest}.bundle"
    ]


async def test_concurrent_puts_of_one_bundle_leave_one_file(tmp_path: Path) -> None:
    store = FsArtifactStore(tmp_path)
    digests = await asyncio.gather(*(store.put(BUNDLE) for _ in range(8)))
    assert len(set(digests)) == 1
    assert len(bundle_files(tmp_path)) == 1  # no temp files left behind


async def test_get_round_trips(tmp_path: Path) -> None:
    store = FsArtifactStore(tmp_path)
    digest = await store.put(BUNDLE)
    assert await FsArtifactStore(tmp_path).get(digest) == BUNDLE
    empty = await store.put({})
    assert await store.get(empty) == {}


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # one bit of content
        lambda data: data[:-10],  # truncated
        lambda data: data + b"x",  # trailing bytes
        lambda data: b"garbage",
        lambda data: b"",
    ],
)
async def test_a_damaged_artifact_is_reported_corrupt(tmp_path: Path, damage: Any) -> None:
    store = FsArtifactStore(tmp_path)
    digest = await store.put(BUNDLE)
    [path] = bundle_files(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(errors.StorageUnavailable, match="corrupt"):
        await store.get(digest)


async def test_an_artifact_swapped_for_another_bundle_is_reported_corrupt(tmp_path: Path) -> None:
    store = FsArtifactStore(tmp_path)
    digest = await store.put(BUNDLE)
    other = await store.put({"other.py": b""})
    paths = {path.stem: path for path in bundle_files(tmp_path)}
    own = paths[digest.removeprefix("sha256:")]
    own.write_bytes(paths[other.removeprefix("sha256:")].read_bytes())
    with pytest.raises(errors.StorageUnavailable, match="does not match its digest"):
        await store.get(digest)


async def test_unknown_digest_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        await FsArtifactStore(tmp_path).get("sha256:" + "0" * 64)


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256:",
        "sha256:" + "A" * 64,
        "sha256:" + "0" * 63,
        "sha256:" + "0" * 65,
        "sha256:" + "0" * 64 + "\n",
        "md5:" + "0" * 32,
        "0" * 64,
        "sha256:../../../../etc/passwd",
        "sha256:" + "0" * 62 + "/.",
        "sha256:" + "0" * 64 + "/../../x",
    ],
)
async def test_malformed_digests_never_touch_the_filesystem(tmp_path: Path, digest: str) -> None:
    root = tmp_path / "absent"
    with pytest.raises(errors.NotFound, match="no artifact"):
        await FsArtifactStore(root).get(digest)
    assert not root.exists()


async def test_check_passes_on_a_writable_root_and_leaves_nothing(tmp_path: Path) -> None:
    await FsArtifactStore(tmp_path / "new").check()
    assert list((tmp_path / "new").iterdir()) == []


async def test_an_unusable_root_is_storage_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    store = FsArtifactStore(blocker / "artifacts")
    with pytest.raises(errors.StorageUnavailable, match="not writable"):
        await store.check()
    with pytest.raises(errors.StorageUnavailable, match="cannot write"):
        await store.put(BUNDLE)


# --- SubprocessBundleLoader: python -------------------------------------------------

VALID = (
    AUTHORING
    + """
from .helpers import TAX
print("the bundle may print; it does not break the answer")

@step
async def charge(amount): return amount * TAX

@step(name="send-receipt", max_retries=5)
async def _send(order): return None

@workflow(name="process-order")
async def process(order): return await charge(order)

@workflow
async def refund(order): return None

also_refund = refund  # an alias is the same workflow
"""
)


async def describe(
    files: dict[str, bytes], entrypoint: str = "workflows.py", **options: Any
) -> Any:
    return await SubprocessBundleLoader(**options).describe("python", files, entrypoint)


async def test_a_valid_bundle_lists_its_workflows_and_steps(private_tmp: Path) -> None:
    files = {"pkg/flows.py": VALID.encode(), "pkg/helpers.py": b"TAX = 2\n"}
    workflows = await describe(files, "pkg/flows.py")
    steps = ("charge", "send-receipt")
    assert workflows == (WorkflowInfo("process-order", steps), WorkflowInfo("refund", steps))
    assert leftovers(private_tmp) == []  # the temporary folder is gone


async def test_a_syntax_error_is_reported_with_the_loader_message(private_tmp: Path) -> None:
    files = {"workflows.py": AUTHORING.encode() + b"\n@workflow\nasync def broken(:\n"}
    with pytest.raises(errors.InvalidDeployment, match="SyntaxError") as caught:
        await describe(files)
    assert 'File "workflows.py", line 4' in caught.value.message
    assert str(private_tmp) not in caught.value.message  # no server paths leak
    assert leftovers(private_tmp) == []


async def test_an_import_error_is_reported() -> None:
    with pytest.raises(errors.InvalidDeployment, match=r"ModuleNotFoundError.*no_such_module"):
        await describe({"workflows.py": b"import no_such_module\n"})


async def test_a_bundle_that_hangs_is_killed_at_the_time_limit(private_tmp: Path) -> None:
    started = time.monotonic()
    with pytest.raises(errors.InvalidDeployment, match="did not load within 1 s"):
        await describe({"workflows.py": b"import time\ntime.sleep(3600)\n"}, timeout_seconds=1)
    assert time.monotonic() - started < 30  # killed, not left to run its hour
    assert leftovers(private_tmp) == []


async def test_the_timeout_also_kills_processes_the_bundle_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    source = (
        "import subprocess, time, pathlib\n"
        "child = subprocess.Popen(['sleep', '3600'])\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))\n"
        "time.sleep(3600)\n"
    )
    with pytest.raises(errors.InvalidDeployment, match="did not load"):
        await describe({"workflows.py": source.encode()}, timeout_seconds=5)
    pid = int(pid_file.read_text())
    assert await _gone(pid)


async def test_a_detached_process_of_the_bundle_cannot_hang_the_loader(tmp_path: Path) -> None:
    """A helper in its own session escapes the kill but must not keep the loader waiting."""
    pid_file = tmp_path / "pid"
    source = (
        "import subprocess, time, pathlib\n"
        "child = subprocess.Popen(['sleep', '3600'], start_new_session=True)\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))\n"
        "time.sleep(3600)\n"
    )
    started = time.monotonic()
    try:
        with pytest.raises(errors.InvalidDeployment, match="did not load"):
            await describe({"workflows.py": source.encode()}, timeout_seconds=5)
        assert time.monotonic() - started < 30  # not kept waiting for the hour
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


async def test_cancelling_a_load_kills_the_child(tmp_path: Path, private_tmp: Path) -> None:
    pid_file = tmp_path / "pid"
    source = (
        f"import os, pathlib, time\npathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
    )
    task = asyncio.create_task(
        describe({"workflows.py": (source + "time.sleep(3600)\n").encode()}, timeout_seconds=60)
    )
    for _ in range(100):
        if _exists(pid_file):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _gone(int(pid_file.read_text()))
    assert leftovers(private_tmp) == []


def _exists(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


async def _gone(pid: int) -> bool:
    """Exited (possibly a zombie awaiting its reaper) within two seconds."""
    for _ in range(40):
        if _process_state(pid) in ("", "Z", "X"):
            return True
        await asyncio.sleep(0.05)
    return False


def _process_state(pid: int) -> str:
    """The state letter from ``/proc/<pid>/stat``; empty once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except FileNotFoundError:
        return ""


async def test_a_bundle_exhausting_memory_fails_and_the_server_is_unaffected() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    huge = b"numbers = [0] * 200_000_000\n"  # 1.6 GB of pointers: fine without a limit
    with pytest.raises(errors.InvalidDeployment, match="MemoryError"):
        await describe({"workflows.py": huge}, memory_limit_bytes=256 * 1024 * 1024)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert len(list(range(1_000_000))) == 1_000_000
    after = AUTHORING + "@workflow\nasync def still_loading(): ...\n"
    assert await describe({"workflows.py": after.encode()}) == (WorkflowInfo("still_loading"),)


async def test_a_bundle_without_workflows_is_refused() -> None:
    source = AUTHORING + "@step\nasync def lonely(): return 1\n"
    with pytest.raises(errors.InvalidDeployment, match="defines no @workflow"):
        await describe({"workflows.py": source.encode()})


async def test_duplicate_workflow_names_are_refused() -> None:
    source = AUTHORING + (
        "@workflow(name='same')\nasync def a(): ...\n@workflow(name='same')\nasync def b(): ...\n"
    )
    with pytest.raises(errors.InvalidDeployment, match=r"duplicate workflow name.*same"):
        await describe({"workflows.py": source.encode()})


async def test_an_empty_workflow_name_is_refused() -> None:
    source = AUTHORING + "@workflow(name='  ')\nasync def nameless(): ...\n"
    with pytest.raises(errors.InvalidDeployment, match="workflow name must not be empty"):
        await describe({"workflows.py": source.encode()})


async def test_exiting_during_import_is_a_failed_load() -> None:
    with pytest.raises(errors.InvalidDeployment, match="SystemExit"):
        await describe({"workflows.py": b"import sys\nsys.exit(0)\n"})


@pytest.mark.parametrize("entrypoint", ["flows.txt", "my-flows.py", "pkg/1st.py"])
async def test_an_entrypoint_that_is_not_a_module_is_refused(entrypoint: str) -> None:
    with pytest.raises(errors.InvalidDeployment, match="entrypoint"):
        await describe({entrypoint: b""}, entrypoint)


# --- SubprocessBundleLoader: graph --------------------------------------------------


def node(node_id: str, kind: str = "action", **data: Any) -> dict[str, Any]:
    if kind == "action":
        data.setdefault("actionType", "log")
    return {"id": node_id, "type": kind, "data": data}


def edge(source: str, target: str) -> dict[str, str]:
    return {"source": source, "target": target}


def graph(name: str = "studio", nodes: Any = None, edges: Any = None) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": nodes if nodes is not None else [node("t", "trigger"), node("b"), node("a")],
        "edges": edges if edges is not None else [edge("t", "b"), edge("b", "a")],
    }


async def describe_graph(document: Any, raw: bytes | None = None) -> Any:
    content = raw if raw is not None else json.dumps(document).encode()
    return await SubprocessBundleLoader().describe(
        "graph", {"workflow.json": content}, "workflow.json"
    )


async def test_a_graph_lists_action_nodes_in_topological_order() -> None:
    nodes = [node("end"), node("t", "trigger"), node("left"), node("right")]
    edges = [edge("t", "left"), edge("t", "right"), edge("left", "end"), edge("right", "end")]
    assert await describe_graph(graph("fan", nodes, edges)) == (
        WorkflowInfo("fan", ("left", "right", "end")),
    )


async def test_a_bundle_may_hold_several_graphs() -> None:
    document = {"workflows": [graph("one"), graph("two", [node("t", "trigger")], [])]}
    assert await describe_graph(document) == (
        WorkflowInfo("one", ("b", "a")),
        WorkflowInfo("two", ()),
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"workflows": "x"}, "workflows must be a list"),
        ({"workflows": []}, "defines no workflow graph"),
        ([1], "must be an object"),
        ({**graph(), "name": ""}, "name must be a non-empty string"),
        ({**graph(), "name": None}, "name must be a non-empty string"),
        ({"workflows": [graph("x"), graph("x")]}, "duplicate workflow name.*x"),
        (graph(nodes="x"), "nodes must be a list"),
        (graph(nodes=[node("t", "trigger"), "x"]), r"nodes\[1\] must be an object"),
        (graph(nodes=[node("t", "trigger"), {"type": "action"}]), r"nodes\[1\]\.id"),
        (graph(nodes=[node("t", "trigger"), node("t")], edges=[]), "duplicate node id 't'"),
        (graph(nodes=[node("a")], edges=[]), "exactly one trigger node, found 0"),
        (graph(nodes=[node("t", "trigger"), node("u", "trigger")], edges=[]), "found 2"),
        (graph(nodes=[node("t", "trigger"), node("x", "loop")], edges=[]), "trigger or action"),
        (
            graph(
                nodes=[node("t", "trigger"), {"id": "a", "type": "action", "data": {}}], edges=[]
            ),
            "'a'.*data.actionType must be one of http_request, .*not None",
        ),
        (
            graph(
                nodes=[
                    node("t", "trigger"),
                    {"id": "a", "type": "action", "data": {"actionType": "http_requets"}},
                ],
                edges=[],
            ),
            "'a'.*actionType must be one of .*, not 'http_requets'",
        ),
        (
            graph(
                nodes=[node("t", "trigger"), {"id": "a", "type": "action", "data": []}], edges=[]
            ),
            "data must be an object",
        ),
        (graph(edges="x"), "edges must be a list"),
        (graph(edges=[edge("t", "ghost")]), r"edges\[0\]\.target 'ghost' is not a node"),
        (graph(edges=[{"target": "a"}]), r"edges\[0\]\.source None is not a node"),
        (graph(edges=[edge("t", "b"), edge("b", "a"), edge("a", "b")]), "cycle through b, a"),
        (graph(edges=[edge("t", "b"), edge("b", "b")]), "cycle through b"),
    ],
)
async def test_invalid_graphs_are_refused_precisely(document: Any, message: str) -> None:
    with pytest.raises(errors.InvalidDeployment, match=message):
        await describe_graph(document)


@pytest.mark.parametrize(
    "raw", [b"{not json", b"\xff", b"[" * 100_000 + b"]" * 100_000], ids=["syntax", "utf8", "deep"]
)
async def test_a_graph_file_that_is_not_json_is_refused(raw: bytes) -> None:
    with pytest.raises(errors.InvalidDeployment, match="not valid JSON"):
        await describe_graph(None, raw)


async def test_a_graph_entrypoint_must_be_in_the_bundle() -> None:
    with pytest.raises(errors.InvalidDeployment, match="not in the bundle"):
        await SubprocessBundleLoader().describe("graph", {"other.json": b"{}"}, "workflow.json")
