"""The one way a bundle's entry file is imported, and how its failures are reported.

Used by the upload check (``describe``), the ``local`` backend (``code``) and the
``process`` backend's children (``child``), so a bundle accepted at upload loads the
same way at run time. Reports name the bundle's own files by their bundle-relative
paths and leave out the server's frames, so a user sees their code and nothing of
the installation.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from domain.authoring import STEP_ATTR, WORKFLOW_ATTR, StepSpec, WorkflowSpec


def module_name(entrypoint: str) -> str:
    """``pkg/flows.py`` → ``pkg.flows``; ``ValueError`` when it cannot be a module."""
    if not entrypoint.endswith(".py"):
        raise ValueError(f"the python entrypoint must be a .py file, got {entrypoint!r}")
    parts = entrypoint[: -len(".py")].split("/")
    if not all(part.isidentifier() for part in parts):
        raise ValueError(f"the entrypoint {entrypoint!r} is not an importable module path")
    return ".".join(parts)


def import_bundle(
    folder: Path, entrypoint: str, name: str | None = None, *, keep_path: bool = False
) -> ModuleType:
    """Import ``entrypoint`` from the bundle unpacked at ``folder``.

    The folder is put first on ``sys.path`` while the module executes, so sibling
    modules of the entrypoint import; it stays there afterwards (``keep_path``) only in
    a process that belongs to this one bundle, where code may import lazily."""
    folder = folder.resolve()
    name = name or module_name(entrypoint)
    location = folder / entrypoint
    if not location.is_file():
        raise FileNotFoundError(f"the entrypoint {entrypoint} is not in the bundle")
    spec = importlib.util.spec_from_file_location(name, location)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {entrypoint}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if not keep_path and str(folder) in sys.path:
            sys.path.remove(str(folder))
    return module


@dataclass(frozen=True, slots=True)
class BundleContents:
    """The workflows and steps a bundle module defines (aliases count once).
    ``names`` keeps every workflow's name, so the upload check sees duplicates."""

    workflows: dict[str, Any]
    names: tuple[str, ...]
    steps: tuple[str, ...]


def contents(module: ModuleType) -> BundleContents:
    marked = _marked(module, WORKFLOW_ATTR, WorkflowSpec)
    workflows: dict[str, Any] = {}
    for value, spec in marked:
        workflows.setdefault(spec.name, value)
    steps = sorted({spec.name for _, spec in _marked(module, STEP_ATTR, StepSpec)})
    return BundleContents(workflows, tuple(spec.name for _, spec in marked), tuple(steps))


def _marked(module: ModuleType, attr: str, kind: type) -> list[tuple[Any, Any]]:
    """(object, spec) for each module attribute carrying ``attr``, once per object.
    Attribute access is guarded: a hostile object's ``__getattr__`` cannot break loading."""
    seen: dict[int, tuple[Any, Any]] = {}
    for value in list(vars(module).values()):
        try:
            spec = getattr(value, attr, None)
        except Exception:
            continue
        if isinstance(spec, kind):
            seen.setdefault(id(value), (value, spec))
    return list(seen.values())


def user_traceback(error: BaseException, folder: Path | None) -> str:
    """The traceback of ``error`` reduced to the frames of the bundle's own files, with
    bundle-relative paths; just the exception line where no frame is the user's."""
    root = str(folder.resolve()) + os.sep if folder is not None else None
    blocks = []
    for item in _chain(error):
        frames = [
            frame
            for frame in traceback.extract_tb(item.__traceback__)
            if root is not None and frame.filename.startswith(root)
        ]
        block = ["Traceback (most recent call last):\n"] if frames else []
        block += traceback.format_list(frames) + traceback.format_exception_only(item)
        blocks.append("".join(block))
    text = "\nThe above exception was the direct cause of the following exception:\n\n".join(blocks)
    return text.replace(root, "") if root is not None else text


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its explicit causes, oldest first, as Python prints them."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__
    return list(reversed(chain))


def describe_error(error: BaseException, folder: Path | None) -> str:
    """One line a user can act on: the exception and, when known, the bundle file and line."""
    message = "".join(traceback.format_exception_only(error)).strip()
    root = str(folder.resolve()) + os.sep if folder is not None else None
    where = None
    for frame in traceback.extract_tb(error.__traceback__):
        if root is not None and frame.filename.startswith(root):
            where = f"{frame.filename[len(root) :]}, line {frame.lineno}"
    if isinstance(error, SyntaxError) and error.filename and root is not None:
        filename = str(error.filename)
        if filename.startswith(root):
            where = f"{filename[len(root) :]}, line {error.lineno}"
        message = message.replace(root, "")
    return f"{message} ({where})" if where else message
