"""``BundleCode``: a deployment's workflow functions, imported from its stored bundle.

Each bundle is unpacked once per digest under ``<code_dir>/<digest>/`` and its
entrypoint imported in a package unique to the digest (``cw_bundle_<digest>``), so
runs keep executing the code of the deployment they were started on.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compute_worker.adapters.worldcompute.bundles.importer import load_bundle, load_graphs
from compute_worker.adapters.worldcompute.graph.interpreter import HttpLimits, HttpSettings
from compute_worker.adapters.worldcompute.runtime.failures import StartFailed
from compute_worker.domain import errors
from compute_worker.domain.deployments import DEFAULT_ENTRYPOINTS, Deployment
from compute_worker.domain.ports.bundles import ArtifactStore
from compute_worker.domain.ports.deployments import DeploymentReader
from compute_worker.domain.ports.engine import DeploymentCode


class BundleCode(DeploymentCode):
    def __init__(
        self, deployments: DeploymentReader, artifacts: ArtifactStore, code_dir: Path,
        graph_http: HttpSettings = HttpLimits,
    ) -> None:  # fmt: skip
        self.graph_http = graph_http  # the limits of graph HTTP nodes (children get them too)
        self._deployments = deployments
        self._artifacts = artifacts
        self._code_dir = code_dir.resolve()  # children never resolve a path of their own
        self._workflows: dict[str, Mapping[str, Any]] = {}
        self._known: dict[str, Deployment] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    async def deployment(self, deployment_id: str) -> Deployment | None:
        """Deployments are immutable, so each is read once. None for a deployment an app
        executes (kind wdk): its runs are not this engine's."""
        found = self._known.get(deployment_id)
        if found is None:
            found = await self._deployments.get(deployment_id)
            if found is not None:
                self._known[deployment_id] = found
        return None if found is None or found.external else found

    async def workflow(self, deployment: Deployment, name: str) -> Any:
        """The workflow function; ``StartFailed`` when the bundle cannot be loaded."""
        found = (await self.workflows(deployment)).get(name)
        if found is None:
            raise errors.WorkflowNotFound(f"workflow {name!r} is not in {deployment.deployment_id}")
        return found

    async def workflows(self, deployment: Deployment) -> Mapping[str, Any]:
        """Every workflow of the deployment by name, loaded once per digest; ``StartFailed``
        when the bundle cannot be loaded (an import failure is tried again next time)."""
        digest = deployment.digest
        if digest not in self._workflows:
            entrypoint = deployment.entrypoint or DEFAULT_ENTRYPOINTS[deployment.kind]
            if deployment.kind == "graph":
                found = load_graphs((await self._bundle(deployment))[entrypoint], self.graph_http)
            else:
                folder = await self.folder(deployment)
                package = "cw_bundle_" + digest.split(":")[-1][:16]
                loaded = await asyncio.to_thread(load_bundle, folder, entrypoint, package)
                found = loaded.workflows
            self._workflows.setdefault(digest, found)
        return self._workflows[digest]

    def folder_of(self, deployment: Deployment) -> Path:
        return self._code_dir / deployment.digest.replace(":", "-")

    async def folder(self, deployment: Deployment) -> Path:
        """The bundle unpacked on disk (once per digest), as an absolute path."""
        folder = self.folder_of(deployment)
        lock = self._loading.setdefault(deployment.digest, asyncio.Lock())
        async with lock:
            if not folder.is_dir():
                files = await self._bundle(deployment)
                await asyncio.to_thread(_unpack, folder, files)
        return folder

    async def _bundle(self, deployment: Deployment) -> dict[str, bytes]:
        try:
            return await self._artifacts.get(deployment.digest)
        except errors.NotFound as missing:
            raise StartFailed(
                f"the bundle of deployment {deployment.deployment_id} cannot be read from "
                f"the artifact store: {missing.message}"
            ) from missing


def _unpack(folder: Path, files: dict[str, bytes]) -> None:
    """Write the bundle beside ``folder`` and rename it into place, so a crash or a
    concurrent unpack (several workers sharing the folder) never shows a partial bundle."""
    folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for path, content in files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        os.chmod(staging, 0o755)
        try:
            os.rename(staging, folder)
        except OSError:
            if not folder.is_dir():  # anything but "another unpack won the race"
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
