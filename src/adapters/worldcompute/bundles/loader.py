"""``SubprocessBundleLoader``: what a bundle defines, found without trusting it.

Python bundles are imported in a child process (``adapters.worldcompute.bundles.describe``)
with memory and CPU limits and a wall-clock timeout, so code that crashes, hangs or
eats memory at import costs a failed deployment, never the server. Graph bundles
are data: they are parsed and checked here, no code runs.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from compute_worker.adapters.cron import schedule_problems
from compute_worker.adapters.worldcompute.bundles import describe
from compute_worker.adapters.worldcompute.bundles.importer import module_name
from compute_worker.adapters.worldcompute.bundles.isolation import child_environment
from compute_worker.adapters.worldcompute.bundles.sandbox import BUNDLE, SCRATCH, Sandbox
from compute_worker.adapters.worldcompute.bundles.sandbox import PATH as SANDBOX_PATH
from compute_worker.adapters.worldcompute.graph.format import parse_graphs
from compute_worker.adapters.worldcompute.graph.interpreter import HttpLimits, HttpSettings
from compute_worker.domain import errors
from compute_worker.domain.deployments import (
    DeploymentKind,
    WorkflowInfo,
    check_workflows,
    clean_bundle_path,
)
from compute_worker.domain.outbound import OutboundPolicy
from compute_worker.domain.ports.bundles import BundleLoader
from compute_worker.domain.schedules import schedule_from_wire

_BUNDLE = "bundle"
_MAX_STDOUT = 4 * 1024 * 1024
_MAX_CHILD_FILE = 64 * 1024 * 1024  # RLIMIT_FSIZE: bounds what the child writes to disk
_STDERR_TAIL = 64 * 1024
_STDERR_LINES = 20


class SubprocessBundleLoader(BundleLoader):
    def __init__(
        self, timeout_seconds: float = 10.0, memory_limit_bytes: int = 512 * 1024 * 1024,
        graph_http: HttpSettings = HttpLimits, sandbox: Sandbox | None = None,
    ) -> None:  # fmt: skip
        self._sandbox = sandbox  # the process backend's box: the check imports in it too
        self._timeout = timeout_seconds
        self._memory = memory_limit_bytes
        self._graph_http = graph_http  # literal URLs of HTTP nodes are checked against it

    async def describe(
        self, kind: DeploymentKind, files: Mapping[str, bytes], entrypoint: str
    ) -> tuple[WorkflowInfo, ...]:
        if kind == "python":
            return await self._describe_python(files, entrypoint)
        if kind == "graph":
            policy = self._graph_http().policy
            return await asyncio.to_thread(_describe_graphs, files, entrypoint, policy)
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
            raise _import_failed(stdout) or _load_failed(returncode, stderr)
        return _workflows_from_child(stdout)

    async def _run_child(self, work: Path, entrypoint: str) -> int:
        """Run the describe child; its whole process group is killed on timeout or cancel.

        Output goes to files, not pipes: a process the bundle started and detached
        could hold a pipe open forever, and waiting for it would hang the server."""
        out, err = await asyncio.to_thread(_open_outputs, work)
        env = self._child_env()
        command = [sys.executable, "-m", describe.__name__, str(work / _BUNDLE), entrypoint]
        if self._sandbox is not None:
            command = self._sandbox.command(
                [*command[:3], BUNDLE, entrypoint], work / _BUNDLE, offline=True
            )
            env.update(HOME=SCRATCH, TMPDIR=SCRATCH, PATH=SANDBOX_PATH)
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=work / _BUNDLE,
                env=env,
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


def _describe_graphs(
    files: Mapping[str, bytes], entrypoint: str, policy: OutboundPolicy
) -> tuple[WorkflowInfo, ...]:
    raw = files.get(entrypoint)
    if raw is None:
        raise errors.InvalidDeployment(f"the entrypoint {entrypoint!r} is not in the bundle")
    return tuple(graph.info for graph in parse_graphs(raw, entrypoint, outbound=policy).values())


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


def _import_failed(stdout: bytes) -> errors.InvalidDeployment | None:
    """The child's own report of an import that raised: the message a run would get,
    then the last lines of the bundle's traceback."""
    try:
        answer = json.loads(stdout)
        message, stack = _text(answer["error"]), answer.get("stack")
    except (ValueError, KeyError, TypeError):
        return None
    lines = stack.strip().splitlines()[-_STDERR_LINES:] if isinstance(stack, str) else []
    return errors.InvalidDeployment("\n".join([message, *lines]))


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
            WorkflowInfo(
                _text(item["name"]),
                tuple(_text(step) for step in item["steps"]),
                schedule_from_wire(item.get("schedule")),
            )
            for item in answer["workflows"]
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.InvalidDeployment("the bundle loader returned malformed output") from exc
    check_workflows(found, "the bundle defines no @workflow")
    problems = schedule_problems(found)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise errors.InvalidDeployment(problems[0]["message"] + more, {"problems": problems})
    return found


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value
