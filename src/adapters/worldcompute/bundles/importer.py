"""The one way a bundle's entry file is imported and what it defines is collected.

Used by the upload check (``describe``), the ``local`` backend (``code``) and the
``process`` backend's children (``child``) through ``load_bundle``, so a bundle
accepted at upload loads the same way at run time, and one that does not load fails
with the same message everywhere (``runtime.failures`` words it).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from compute_worker.adapters.worldcompute.graph.interpreter import (
    HttpLimits,
    HttpSettings,
    graph_workflows,
)
from compute_worker.adapters.worldcompute.runtime.failures import (
    StartFailed,
    describe_error,
    user_traceback,
)
from compute_worker.domain import errors
from compute_worker.domain.authoring import STEP_ATTR, WORKFLOW_ATTR, StepSpec, WorkflowSpec

PACKAGE = "cw_bundle"  # the package standing for the bundle's folder in its own process


def module_name(entrypoint: str) -> str:
    """``pkg/flows.py`` → ``pkg.flows``; ``ValueError`` when it cannot be a module."""
    if not entrypoint.endswith(".py"):
        raise ValueError(f"the python entrypoint must be a .py file, got {entrypoint!r}")
    parts = entrypoint[: -len(".py")].split("/")
    if not all(part.isidentifier() for part in parts):
        raise ValueError(f"the entrypoint {entrypoint!r} is not an importable module path")
    return ".".join(parts)


def import_bundle(
    folder: Path, entrypoint: str, package: str = PACKAGE, *, keep_path: bool = False
) -> ModuleType:
    """Import ``entrypoint`` from the bundle unpacked at ``folder``, as the module
    ``<package>.<module path>`` (``cw_bundle.pkg.flows`` for ``pkg/flows.py``).

    ``package`` stands for the bundle's folder, so the entry file's relative imports
    (``from .rates import TAX``) resolve inside the bundle, the same way whichever
    process imports it; a process holding several bundles gives each a package of its
    own. The folder is also put first on ``sys.path`` while the module executes, so
    sibling modules import by their own names; it stays there afterwards
    (``keep_path``) only in a process that belongs to this one bundle, where code may
    import lazily. A failed import leaves none of the package's modules behind."""
    folder = folder.resolve()
    dotted = module_name(entrypoint)
    location = folder / entrypoint
    if not location.is_file():
        raise FileNotFoundError(f"the entrypoint {entrypoint} is not in the bundle")
    root = importlib.machinery.ModuleSpec(package, None, is_package=True)
    root.submodule_search_locations = [str(folder)]
    sys.modules[package] = importlib.util.module_from_spec(root)
    sys.path.insert(0, str(folder))
    try:
        parent, _, leaf = f"{package}.{dotted}".rpartition(".")
        holder = importlib.import_module(parent)  # the entry's packages, __init__ files run
        spec = importlib.util.spec_from_file_location(f"{parent}.{leaf}", location)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {entrypoint}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(holder, leaf, module)
    except BaseException:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            sys.modules.pop(name, None)
        raise
    finally:
        if not keep_path and str(folder) in sys.path:
            sys.path.remove(str(folder))
    return module


def load_bundle(
    folder: Path, entrypoint: str, package: str = PACKAGE, *, keep_path: bool = False
) -> BundleContents:
    """What the bundle at ``folder`` defines (``import_bundle``, then ``contents``).
    ``StartFailed`` when the import raised anything (``SystemExit`` too): the exception
    and the bundle's file and line, and the bundle's own frames."""
    try:
        module = import_bundle(folder, entrypoint, package, keep_path=keep_path)
    except BaseException as error:
        raise StartFailed(
            f"the bundle did not load: {describe_error(error, folder)}",
            user_traceback(error, folder),
        ) from error
    return contents(module)


def load_graphs(raw: bytes, http: HttpSettings = HttpLimits) -> dict[str, Any]:
    """The interpreter's workflow for each graph of a graph bundle's file (``http``: the
    limits of its HTTP nodes); ``StartFailed`` when the upload check would refuse it."""
    try:
        return graph_workflows(raw, http)
    except errors.InvalidDeployment as invalid:
        raise StartFailed(f"the graph did not load: {invalid.message}") from invalid


def load_workflows(
    folder: Path,
    entrypoint: str,
    kind: str,
    package: str = PACKAGE,
    *,
    keep_path: bool = False,
    http: HttpSettings = HttpLimits,
) -> dict[str, Any]:
    """Every workflow of the bundle unpacked at ``folder``, by name (``StartFailed``)."""
    if kind == "graph":  # the built-in interpreter; the bundle holds no code
        return load_graphs((folder / entrypoint).read_bytes(), http)
    return load_bundle(folder, entrypoint, package, keep_path=keep_path).workflows


@dataclass(frozen=True, slots=True)
class BundleContents:
    """The workflows and steps a bundle module defines (aliases count once).
    ``specs`` keeps every workflow's spec, so the upload check sees duplicates."""

    workflows: dict[str, Any]
    specs: tuple[WorkflowSpec, ...]
    steps: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)


def contents(module: ModuleType) -> BundleContents:
    marked = _marked(module, WORKFLOW_ATTR, WorkflowSpec)
    workflows: dict[str, Any] = {}
    for value, spec in marked:
        workflows.setdefault(spec.name, value)
    steps = sorted({spec.name for _, spec in _marked(module, STEP_ATTR, StepSpec)})
    return BundleContents(workflows, tuple(spec for _, spec in marked), tuple(steps))


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
