"""``SubprocessBundleLoader``: what a bundle defines, found without trusting it.

Python bundles are imported in a child process (``adapters.worldcompute.bundles.describe``)
with memory and CPU limits and a wall-clock timeout, so code that crashes, hangs or
eats memory at import costs a failed deployment, never the server. Graph bundles
are data: they are parsed and checked here, no code runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import math
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from adapters.worldcompute.bundles import describe
from adapters.worldcompute.bundles.importer import module_name
from adapters.worldcompute.bundles.isolation import child_environment
from domain import errors
from domain.deployments import DeploymentKind, WorkflowInfo, clean_bundle_path
from domain.ports.bundles import BundleLoader

_BUNDLE = "bundle"
_MAX_STDOUT = 4 * 1024 * 1024
_MAX_CHILD_FILE = 64 * 1024 * 1024  # RLIMIT_FSIZE: bounds what the child writes to disk
_STDERR_TAIL = 64 * 1024
_STDERR_LINES = 20


class SubprocessBundleLoader(BundleLoader):
    def __init__(
        self, timeout_seconds: float = 10.0, memory_limit_bytes: int = 512 * 1024 * 1024
    ) -> None:
        self._timeout = timeout_seconds
        self._memory = memory_limit_bytes

    async def describe(
        self, kind: DeploymentKind, files: Mapping[str, bytes], entrypoint: str
    ) -> tuple[WorkflowInfo, ...]:
        if kind == "python":
            return await self._describe_python(files, entrypoint)
        if kind == "graph":
            return await asyncio.to_thread(describe_graphs, files, entrypoint)
        raise errors.InvalidDeployment(f"unknown deployment kind {kind!r}")

    async def _describe_python(
        self, files: Mapping[str, bytes], entrypoint: str
    ) -> tuple[WorkflowInfo, ...]:
        try:
            module_name(entrypoint)
        except ValueError as exc:
            raise errors.InvalidDeployment(str(exc)) from exc
        work = await asyncio.to_thread(_prepare, files)
        try:
            returncode = await self._run_child(work, entrypoint)
            stdout, stderr = await asyncio.to_thread(_outputs, work)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        if returncode != 0:
            raise _load_failed(returncode, stderr)
        return _workflows_from_child(stdout)

    async def _run_child(self, work: Path, entrypoint: str) -> int:
        """Run the describe child; its whole process group is killed on timeout or cancel.

        Output goes to files, not pipes: a process the bundle started and detached
        could hold a pipe open forever, and waiting for it would hang the server."""
        out, err = await asyncio.to_thread(_open_outputs, work)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", describe.__name__, str(work / _BUNDLE), entrypoint,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=work / _BUNDLE,
                env=self._child_env(),
                start_new_session=True,  # its own process group, so helpers die with it
            )  # fmt: skip
        finally:
            out.close()
            err.close()
        try:
            async with asyncio.timeout(self._timeout):
                return await process.wait()
        except TimeoutError:
            raise errors.InvalidDeployment(
                f"the bundle did not load within {self._timeout:g} s"
            ) from None
        finally:
            _kill_group(process)
            await process.wait()

    def _child_env(self) -> dict[str, str]:
        env = child_environment()
        env[describe.MEMORY_ENV] = str(self._memory)
        env[describe.CPU_ENV] = str(math.ceil(self._timeout) + 1)
        env[describe.FILE_SIZE_ENV] = str(_MAX_CHILD_FILE)
        return env


def _prepare(files: Mapping[str, bytes]) -> Path:
    """A fresh private folder: the bundle under ``bundle/`` beside the child's output
    files. Paths are checked again here, where they would touch the filesystem."""
    work = Path(tempfile.mkdtemp(prefix="cw-bundle-"))
    try:
        for path, content in files.items():
            _write_file(work / _BUNDLE, path, content)
        (work / _BUNDLE).mkdir(exist_ok=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work


def _write_file(directory: Path, path: str, content: bytes) -> None:
    target = directory / clean_bundle_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as handle:  # never through an existing file or link
            handle.write(content)
    except OSError as exc:
        raise errors.InvalidDeployment(f"the bundle cannot be laid out: {exc}") from exc


def _open_outputs(work: Path) -> tuple[BinaryIO, BinaryIO]:
    return open(work / "stdout", "xb"), open(work / "stderr", "xb")


def _outputs(work: Path) -> tuple[bytes, bytes]:
    """The child's answer (refused past ``_MAX_STDOUT``: it is small JSON) and the
    tail of its stderr (a chatty bundle cannot fill memory)."""
    with open(work / "stdout", "rb") as out:
        stdout = out.read(_MAX_STDOUT + 1)
    if len(stdout) > _MAX_STDOUT:
        raise errors.InvalidDeployment("the bundle loader produced too much output")
    with open(work / "stderr", "rb") as err:
        err.seek(max(0, os.fstat(err.fileno()).st_size - _STDERR_TAIL))
        stderr = err.read(_STDERR_TAIL)
    return stdout, stderr


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _load_failed(returncode: int, stderr: bytes) -> errors.InvalidDeployment:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()[-_STDERR_LINES:]
    tail = "\n".join(lines)
    if returncode < 0:
        how = f"was killed by signal {_signal_name(-returncode)}"
        if -returncode == signal.SIGXCPU:
            how += " (CPU time limit)"
    else:
        how = f"exited with status {returncode}"
    message = f"the bundle failed to load: the loader {how}"
    return errors.InvalidDeployment(f"{message}\n{tail}" if tail else message)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _workflows_from_child(stdout: bytes) -> tuple[WorkflowInfo, ...]:
    try:
        answer = json.loads(stdout)
        found = tuple(
            WorkflowInfo(_text(item["name"]), tuple(_text(step) for step in item["steps"]))
            for item in answer["workflows"]
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.InvalidDeployment("the bundle loader returned malformed output") from exc
    return _checked(found, "the bundle defines no @workflow")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _checked(found: tuple[WorkflowInfo, ...], none_message: str) -> tuple[WorkflowInfo, ...]:
    if not found:
        raise errors.InvalidDeployment(none_message)
    names = [workflow.name for workflow in found]
    if not all(name.strip() for name in names):
        raise errors.InvalidDeployment("a workflow name is empty")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise errors.InvalidDeployment(
            f"duplicate workflow name(s): {', '.join(duplicates)}", {"duplicates": duplicates}
        )
    return found


# --- graph bundles ------------------------------------------------------------------

_NODE_TYPES = ("trigger", "action")
# what the interpreter (graph.py) executes; anything else is refused at upload
ACTION_TYPES = ("http_request", "condition", "log", "transform", "wait", "wait_for_hook")


def describe_graphs(files: Mapping[str, bytes], entrypoint: str) -> tuple[WorkflowInfo, ...]:
    """Workflow Studio graphs: one graph or ``{"workflows": [graph, …]}``; each action
    node becomes a step, in topological order."""
    raw = files.get(entrypoint)
    if raw is None:
        raise errors.InvalidDeployment(f"the entrypoint {entrypoint!r} is not in the bundle")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidDeployment(f"{entrypoint} is not valid JSON: {exc}") from exc
    if isinstance(document, dict) and "workflows" in document:
        graphs = document["workflows"]
        if not isinstance(graphs, list):
            raise errors.InvalidDeployment(f"{entrypoint}: workflows must be a list of graphs")
    else:
        graphs = [document]
    found = tuple(_graph(graph, index) for index, graph in enumerate(graphs))
    return _checked(found, "the bundle defines no workflow graph")


def _graph(graph: Any, index: int) -> WorkflowInfo:
    where = f"workflows[{index}]"
    if not isinstance(graph, dict):
        raise errors.InvalidDeployment(f"{where} must be an object")
    name = graph.get("name")
    if not isinstance(name, str) or not name.strip():
        raise errors.InvalidDeployment(f"{where}.name must be a non-empty string")
    where = f"workflow {name!r}"
    nodes = _nodes(graph.get("nodes"), where)
    edges = _edges(graph.get("edges", []), nodes, where)
    order = _topological(list(nodes), edges, where)
    return WorkflowInfo(name, tuple(node for node in order if nodes[node] == "action"))


def _nodes(nodes: Any, where: str) -> dict[str, str]:
    """Node id → type, in declaration order."""
    if not isinstance(nodes, list):
        raise errors.InvalidDeployment(f"{where}: nodes must be a list")
    types: dict[str, str] = {}
    for position, node in enumerate(nodes):
        at = f"{where}: nodes[{position}]"
        if not isinstance(node, dict):
            raise errors.InvalidDeployment(f"{at} must be an object")
        node_id, node_type, data = node.get("id"), node.get("type"), node.get("data", {})
        if not isinstance(node_id, str) or not node_id:
            raise errors.InvalidDeployment(f"{at}.id must be a non-empty string")
        if node_id in types:
            raise errors.InvalidDeployment(f"{where}: duplicate node id {node_id!r}")
        if node_type not in _NODE_TYPES:
            raise errors.InvalidDeployment(f"{at} ({node_id!r}): type must be trigger or action")
        if not isinstance(data, dict):
            raise errors.InvalidDeployment(f"{at} ({node_id!r}): data must be an object")
        if node_type == "action" and data.get("actionType") not in ACTION_TYPES:
            raise errors.InvalidDeployment(
                f"{at} ({node_id!r}): data.actionType must be one of {', '.join(ACTION_TYPES)}, "
                f"not {data.get('actionType')!r}",
                {"node": node_id, "field": "data.actionType", "allowed": list(ACTION_TYPES)},
            )
        types[node_id] = node_type
    triggers = [node_id for node_id, node_type in types.items() if node_type == "trigger"]
    if len(triggers) != 1:
        raise errors.InvalidDeployment(
            f"{where}: needs exactly one trigger node, found {len(triggers)}"
        )
    return types


def _edges(edges: Any, nodes: Mapping[str, str], where: str) -> list[tuple[str, str]]:
    if not isinstance(edges, list):
        raise errors.InvalidDeployment(f"{where}: edges must be a list")
    pairs: list[tuple[str, str]] = []
    for position, edge in enumerate(edges):
        at = f"{where}: edges[{position}]"
        if not isinstance(edge, dict):
            raise errors.InvalidDeployment(f"{at} must be an object")
        pairs.append((_end(edge, "source", nodes, at), _end(edge, "target", nodes, at)))
    return pairs


def _end(edge: Mapping[str, Any], end: str, nodes: Mapping[str, str], at: str) -> str:
    value = edge.get(end)
    if not isinstance(value, str) or value not in nodes:
        raise errors.InvalidDeployment(f"{at}.{end} {value!r} is not a node of the graph")
    return value


def _topological(nodes: list[str], edges: list[tuple[str, str]], where: str) -> list[str]:
    """Kahn's algorithm, ties broken by declaration order so the result is stable."""
    position = {node: index for index, node in enumerate(nodes)}
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    incoming = dict.fromkeys(nodes, 0)
    for source, target in edges:
        successors[source].append(target)
        incoming[target] += 1
    ready = [position[node] for node in nodes if incoming[node] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for target in successors[node]:
            incoming[target] -= 1
            if incoming[target] == 0:
                heapq.heappush(ready, position[target])
    if len(order) != len(nodes):
        stuck = sorted((node for node in nodes if incoming[node] > 0), key=position.__getitem__)
        raise errors.InvalidDeployment(
            f"{where}: the graph has a cycle through {', '.join(stuck[:10])}",
            {"nodes": stuck[:50]},
        )
    return order
