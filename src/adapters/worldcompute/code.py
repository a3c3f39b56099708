"""``BundleCode``: a deployment's workflow functions, imported from its stored bundle.

Each bundle is unpacked once per digest under ``<data_dir>/code/<digest>/`` and its
entrypoint imported under a module name unique to the digest, so runs keep executing
the code of the deployment they were started on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from adapters.worldcompute.authoring import WORKFLOW_ATTR
from adapters.worldcompute.graph import graph_workflow
from domain import errors
from domain.deployments import Deployment
from domain.ports.bundles import ArtifactStore
from domain.ports.deployments import DeploymentReader
from domain.ports.engine import DeploymentCode


class BundleCode(DeploymentCode):
    def __init__(
        self, deployments: DeploymentReader, artifacts: ArtifactStore, code_dir: Path
    ) -> None:
        self._deployments = deployments
        self._artifacts = artifacts
        self._code_dir = code_dir
        self._modules: dict[str, ModuleType] = {}
        self._known: dict[str, Deployment] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    async def deployment(self, deployment_id: str) -> Deployment | None:
        """Deployments are immutable, so each is read once."""
        found = self._known.get(deployment_id)
        if found is None:
            found = await self._deployments.get(deployment_id)
            if found is not None:
                self._known[deployment_id] = found
        return found

    async def workflow(self, deployment: Deployment, name: str) -> Any:
        if deployment.kind == "graph":
            files = await self._artifacts.get(deployment.digest)
            return graph_workflow(files[deployment.entrypoint or "workflow.json"], name)
        module = await self._module(deployment)
        for value in vars(module).values():
            spec = getattr(value, WORKFLOW_ATTR, None)
            if spec is not None and spec.name == name:
                return value
        raise errors.WorkflowNotFound(f"workflow {name!r} is not in {deployment.deployment_id}")

    async def folder(self, deployment: Deployment) -> Path:
        """The bundle unpacked on disk (once per digest)."""
        folder = self._code_dir / deployment.digest.replace(":", "-")
        lock = self._loading.setdefault(deployment.digest, asyncio.Lock())
        async with lock:
            if not (folder / _COMPLETE).exists():
                files = await self._artifacts.get(deployment.digest)
                await asyncio.to_thread(_unpack, folder, files)
        return folder

    async def _module(self, deployment: Deployment) -> ModuleType:
        digest = deployment.digest
        if digest not in self._modules:
            folder = await self.folder(deployment)
            module = await asyncio.to_thread(
                _import, folder, deployment.entrypoint or "workflows.py", digest
            )
            self._modules.setdefault(digest, module)
        return self._modules[digest]


_COMPLETE = ".complete"


def _unpack(folder: Path, files: dict[str, bytes]) -> None:
    for path, content in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (folder / _COMPLETE).write_text("ok")


def _import(folder: Path, entrypoint: str, digest: str) -> ModuleType:
    name = "cw_bundle_" + digest.split(":")[-1][:16]
    spec = importlib.util.spec_from_file_location(name, folder / entrypoint)
    if spec is None or spec.loader is None:
        raise errors.InvalidDeployment(f"cannot import {entrypoint}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # sibling modules of the entrypoint
    try:
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module
