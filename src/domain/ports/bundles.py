"""Where deployment bundles live and how their workflows are discovered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from compute_worker.domain.deployments import DeploymentKind, WorkflowInfo


class ArtifactStore(Protocol):
    async def put(self, files: Mapping[str, bytes]) -> str:
        """Store a bundle once per content; returns its digest ``sha256:<hex>``."""
        ...

    async def get(self, digest: str) -> dict[str, bytes]: ...

    async def check(self) -> None:
        """Raise ``StorageUnavailable`` when the store cannot be written."""
        ...


class BundleLoader(Protocol):
    async def describe(
        self, kind: DeploymentKind, files: Mapping[str, bytes], entrypoint: str
    ) -> tuple[WorkflowInfo, ...]:
        """Load the bundle in isolation and list its workflows; ``InvalidDeployment``
        (with the loader's message) when it does not load or defines none."""
        ...
