"""Deployments: immutable, content-addressed bundles of workflow code or Studio graphs,
or (kind ``wdk``) the endpoint of a Workflow DevKit app the worker delivers queue
messages to (``domain.wdk``)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from compute_worker.domain import errors
from compute_worker.domain.schedules import Schedule

DeploymentKind = Literal["python", "graph", "wdk"]
KINDS: tuple[str, ...] = ("python", "graph", "wdk")
EXTERNAL_KINDS: tuple[str, ...] = ("wdk",)  # runs executed by an app, not by this worker
DEFAULT_ENTRYPOINTS: dict[str, str] = {"python": "workflows.py", "graph": "workflow.json"}
MAX_BUNDLE_BYTES = 20 * 1024 * 1024
MAX_BUNDLE_FILES = 2000
MAX_PATH_LENGTH = 512
ACTIVE = "active"  # a fixed word in routes, never an id


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    name: str
    steps: tuple[str, ...] = ()
    schedule: Schedule | None = None  # started on this calendar while the deployment is active


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a ``wdk`` deployment's app listens: its base URL, headers added to every
    delivery and the secret deliveries are signed with (never shown)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    delivery_secret: str | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    deployment_id: str
    kind: DeploymentKind
    digest: str
    workflows: tuple[WorkflowInfo, ...]
    created_at: datetime
    entrypoint: str | None = None
    metadata: dict[str, Any] | None = None
    active: bool = False
    endpoint: Endpoint | None = None

    @property
    def external(self) -> bool:
        """Executed by an app the worker delivers to, not by this worker's engine."""
        return self.kind in EXTERNAL_KINDS

    def workflow(self, name: str) -> WorkflowInfo | None:
        return next((w for w in self.workflows if w.name == name), None)

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The workflows it schedules, by name."""
        return {w.name: w.schedule for w in self.workflows if w.schedule is not None}


def clean_bundle_path(path: str) -> str:
    """A bundle-relative POSIX path, or ``InvalidDeployment`` for anything that could
    escape the bundle (absolute paths, ``..``, drive letters, backslashes, NUL)."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise errors.InvalidDeployment(f"invalid path in bundle: {path[:80]!r}")
    if "\\" in path or "\x00" in path or path.startswith("/") or ":" in path.split("/")[0]:
        raise errors.InvalidDeployment(f"absolute or unsafe path in bundle: {path!r}")
    parts = path.split("/")
    if any(part == ".." for part in parts):
        raise errors.InvalidDeployment(f"path escapes the bundle: {path!r}")
    normalized = posixpath.normpath(path)
    if normalized in (".", "") or normalized.startswith("../"):
        raise errors.InvalidDeployment(f"invalid path in bundle: {path!r}")
    return normalized


def check_bundle(files: Mapping[str, bytes], entrypoint: str) -> None:
    """Size, count and entrypoint rules every bundle must satisfy."""
    if not files:
        raise errors.InvalidDeployment("the bundle holds no files")
    for path in files:
        clean_bundle_path(path)
    if len(files) > MAX_BUNDLE_FILES:
        raise errors.InvalidDeployment(f"the bundle holds more than {MAX_BUNDLE_FILES} files")
    total = sum(len(content) for content in files.values())
    if total > MAX_BUNDLE_BYTES:
        raise errors.InvalidDeployment(f"the bundle exceeds {MAX_BUNDLE_BYTES} bytes")
    if entrypoint not in files:
        raise errors.InvalidDeployment(
            f"the entrypoint {entrypoint!r} is not in the bundle",
            {"entrypoint": entrypoint, "files": sorted(files)[:50]},
        )


def check_workflows(found: tuple[WorkflowInfo, ...], none_message: str) -> tuple[WorkflowInfo, ...]:
    """What a bundle defines must be at least one workflow, each with a name of its own;
    ``InvalidDeployment`` (``none_message`` when there is none) otherwise."""
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
