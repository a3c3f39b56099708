"""The upload check and the run load agree: a bundle is accepted or refused the same way,
lists the same workflow names, and a broken import fails with the same message — at
upload (``SubprocessBundleLoader``, a limited child process), in the ``local`` backend
(``BundleCode``, in this process) and in a ``process`` backend child (the real child
process, started as the backend starts it)."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from compute_worker.adapters.fs.artifact_store import FsArtifactStore
from compute_worker.adapters.worldcompute.bundles.code import BundleCode
from compute_worker.adapters.worldcompute.bundles.isolation import child_environment
from compute_worker.adapters.worldcompute.bundles.loader import SubprocessBundleLoader
from compute_worker.adapters.worldcompute.process import child as child_module
from compute_worker.adapters.worldcompute.runtime.failures import StartFailed
from compute_worker.domain import errors
from compute_worker.domain.deployments import DEFAULT_ENTRYPOINTS, Deployment, DeploymentKind
from tests.fakes import FakeDeployments, FakeStore

AUTHORING = "from compute_worker import step, workflow\n"


@dataclass(frozen=True)
class Outcome:
    """What one loader made of a bundle: the workflow names, or the failure's first line."""

    names: tuple[str, ...] = ()
    failure: str | None = None


@dataclass(frozen=True)
class Case:
    kind: DeploymentKind
    files: dict[str, str]
    entrypoint: str | None = None
    expected: Outcome | None = None  # names when it loads; None: it must fail everywhere

    @property
    def entry(self) -> str:
        return self.entrypoint or DEFAULT_ENTRYPOINTS[self.kind]


def graph(name: str, edges: list[dict[str, str]] | None = None) -> str:
    log = {"actionType": "log"}
    nodes = [{"id": "t", "type": "trigger"}, {"id": "a", "type": "action", "data": log}]
    return json.dumps({"name": name, "nodes": nodes, "edges": edges or [edge("t", "a")]})


def edge(source: str, target: str) -> dict[str, str]:
    return {"source": source, "target": target}


CASES = {
    "valid": Case(
        "python",
        {
            "workflows.py": AUTHORING
            + (
                "@step\nasync def charge(x): return x\n"
                "@workflow(name='process-order')\nasync def process(x): return await charge(x)\n"
                "@workflow\nasync def refund(x): return None\n"
                "again = refund  # an alias is the same workflow\n"
            )
        },
        expected=Outcome(("process-order", "refund")),
    ),
    "package-relative-import": Case(
        "python",
        {
            "shop/flows.py": AUTHORING + "from .agree_rates import TAX\n"
            "@workflow\nasync def taxed(x): return x * TAX\n",
            "shop/agree_rates.py": "TAX = 2\n",
        },
        entrypoint="shop/flows.py",
        expected=Outcome(("taxed",)),
    ),
    "sibling-import": Case(
        "python",
        {
            "workflows.py": AUTHORING + "import agree_sibling\n"
            "@workflow\nasync def greet(x): return agree_sibling.HELLO + x\n",
            "agree_sibling.py": "HELLO = 'hello '\n",
        },
        expected=Outcome(("greet",)),
    ),
    "hostile-attribute": Case(
        "python",
        {
            "workflows.py": AUTHORING
            + (
                "class Trap:\n    def __getattr__(self, name): raise RuntimeError('gotcha')\n"
                "trap = Trap()\n@workflow\nasync def safe(): return 1\n"
            )
        },
        expected=Outcome(("safe",)),
    ),
    "syntax-error": Case("python", {"workflows.py": AUTHORING + "@workflow\nasync def x(:\n"}),
    "raises-at-import": Case("python", {"workflows.py": "x = 1\ny = x / 0\n"}),
    "exits-at-import": Case("python", {"workflows.py": "import sys\nsys.exit(3)\n"}),
    "missing-module": Case("python", {"workflows.py": "import agree_no_such_module\n"}),
    "graph": Case("graph", {"workflow.json": graph("studio")}, expected=Outcome(("studio",))),
    "graph-with-a-cycle": Case(
        "graph",
        {"workflow.json": graph("loop", [edge("t", "a"), edge("a", "a")])},
    ),
}


async def upload(case: Case) -> Outcome:
    files = {path: text.encode() for path, text in case.files.items()}
    try:
        found = await SubprocessBundleLoader().describe(case.kind, files, case.entry)
    except errors.InvalidDeployment as refused:
        return Outcome(failure=refused.message.splitlines()[0])
    return Outcome(tuple(workflow.name for workflow in found))


async def deployed(case: Case, tmp_path: Path) -> tuple[BundleCode, Deployment]:
    store = FsArtifactStore(tmp_path / "artifacts")
    digest = await store.put({path: text.encode() for path, text in case.files.items()})
    deployment = Deployment(f"dpl_{digest[-12:]}", case.kind, digest, (), datetime.now(UTC),
                            case.entrypoint)  # fmt: skip
    return BundleCode(FakeDeployments(FakeStore()), store, tmp_path / "code"), deployment


async def local_load(code: BundleCode, deployment: Deployment) -> Outcome:
    try:
        found = await code.workflows(deployment)
    except StartFailed as failure:
        return Outcome(failure=failure.message)
    return Outcome(tuple(sorted(found)))


async def child_load(code: BundleCode, deployment: Deployment, case: Case) -> Outcome:
    """Start a ``process`` backend child on the unpacked bundle and read its first answer."""
    folder = await code.folder(deployment)
    env = {
        **child_environment(),
        child_module.ENV_MESSAGE_BYTES: "1000000",
        child_module.ENV_BUNDLE: str(folder),
        child_module.ENV_ENTRYPOINT: case.entry,
        child_module.ENV_KIND: case.kind,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", child_module.__name__, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=folder,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        answer: dict[str, Any] = json.loads(line)
        if answer["op"] == "ready":
            process.stdin.write(b'{"op": "stop"}\n')
            await process.stdin.drain()
    finally:
        if process.returncode is None:
            await asyncio.wait_for(process.wait(), 10)
    if answer["op"] == "failed":
        return Outcome(failure=answer["message"])
    assert answer["op"] == "ready", answer
    return Outcome(tuple(answer["workflows"]))


@pytest.mark.parametrize("name", list(CASES))
async def test_upload_and_both_run_loads_agree(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    code, deployment = await deployed(case, tmp_path)
    at_upload = await upload(case)
    in_process = await local_load(code, deployment)
    in_child = await child_load(code, deployment, case)

    if case.expected is not None:
        assert at_upload == case.expected, at_upload
        assert Outcome(tuple(sorted(at_upload.names))) == in_process == in_child
        return
    assert at_upload.failure is not None, f"{name} was accepted at upload"
    assert in_process.failure is not None and in_child.failure is not None
    assert in_process.failure == in_child.failure
    # the upload check says it in the words a run uses (a graph's without the prefix)
    assert in_process.failure.removeprefix("the graph did not load: ") == at_upload.failure


async def test_a_failed_import_names_the_bundle_file_and_line(tmp_path: Path) -> None:
    case = CASES["raises-at-import"]
    code, deployment = await deployed(case, tmp_path)
    expected = "the bundle did not load: ZeroDivisionError: division by zero (workflows.py, line 2)"
    assert (await upload(case)).failure == expected
    assert (await local_load(code, deployment)).failure == expected


async def test_a_workflow_the_bundle_lacks_is_not_found_at_run_time(tmp_path: Path) -> None:
    code, deployment = await deployed(CASES["valid"], tmp_path)
    assert await code.workflow(deployment, "refund") is not None
    with pytest.raises(errors.WorkflowNotFound, match="'missing' is not in dpl_"):
        await code.workflow(deployment, "missing")
