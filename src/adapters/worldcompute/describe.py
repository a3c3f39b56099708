"""The child process that loads an untrusted bundle and lists its workflows.

``python -m adapters.worldcompute.describe <bundle dir> <entrypoint>``, started by
``SubprocessBundleLoader``. It caps its own memory, CPU time and file sizes first
(limits named by the environment), then imports the entrypoint from the bundle folder and
prints ``{"workflows": [{"name", "steps"}]}`` on the original stdout. Anything the
bundle prints goes to stderr so it cannot corrupt that answer. A failure is a
traceback on stderr and a non-zero exit; the parent reports it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import sys
import traceback
from types import ModuleType
from typing import Any

from adapters.worldcompute.authoring import STEP_ATTR, WORKFLOW_ATTR, StepSpec, WorkflowSpec

MEMORY_ENV = "COMPUTE_WORKER_LOADER_MEMORY_BYTES"
CPU_ENV = "COMPUTE_WORKER_LOADER_CPU_SECONDS"
FILE_SIZE_ENV = "COMPUTE_WORKER_LOADER_FILE_BYTES"


def module_name(entrypoint: str) -> str:
    """``pkg/flows.py`` → ``pkg.flows``; ``ValueError`` when it cannot be a module."""
    if not entrypoint.endswith(".py"):
        raise ValueError(f"the python entrypoint must be a .py file, got {entrypoint!r}")
    parts = entrypoint[: -len(".py")].split("/")
    if not all(part.isidentifier() for part in parts):
        raise ValueError(f"the entrypoint {entrypoint!r} is not an importable module path")
    return ".".join(parts)


def _limit(kind: int, value: str | None) -> None:
    if not value:
        return
    _, hard = resource.getrlimit(kind)
    wanted = int(value)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(kind, (wanted, wanted))


def _load(directory: str, entrypoint: str) -> ModuleType:
    name = module_name(entrypoint)
    sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, os.path.join(directory, entrypoint))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {entrypoint!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _marked(module: ModuleType, attr: str, kind: type) -> list[Any]:
    """Specs found on the module's attributes, once per object (aliases count once)."""
    seen: dict[int, Any] = {}
    for value in list(vars(module).values()):
        try:
            spec = getattr(value, attr, None)
        except Exception:
            continue
        if isinstance(spec, kind):
            seen.setdefault(id(value), spec)
    return list(seen.values())


def describe(module: ModuleType) -> dict[str, Any]:
    steps = sorted({spec.name for spec in _marked(module, STEP_ATTR, StepSpec)})
    workflows = _marked(module, WORKFLOW_ATTR, WorkflowSpec)
    return {"workflows": [{"name": spec.name, "steps": steps} for spec in workflows]}


def main(argv: list[str]) -> int:
    _limit(resource.RLIMIT_AS, os.environ.get(MEMORY_ENV))
    _limit(resource.RLIMIT_CPU, os.environ.get(CPU_ENV))
    _limit(resource.RLIMIT_FSIZE, os.environ.get(FILE_SIZE_ENV))
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the bundle's prints go to stderr
    sys.stdout = sys.stderr
    directory, entrypoint = argv
    try:
        result = describe(_load(directory, entrypoint))
    except BaseException as exc:  # SystemExit too: the bundle did not load
        _report(exc, directory)
        return 1
    answer.write(json.dumps(result))
    answer.close()
    return 0


def _report(exc: BaseException, directory: str) -> None:
    """The bundle's part of the traceback, with paths relative to the bundle."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(directory)
    ]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames) + traceback.format_exception_only(exc)
    sys.stderr.write("".join(lines).replace(directory + os.sep, ""))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
