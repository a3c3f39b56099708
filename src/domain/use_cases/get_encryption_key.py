"""GetEncryptionKey (decision D10): the run's AES-256 key, derived, never stored.

The deployment id that goes into the derivation is the caller's, else the run's,
else the active deployment's — the same answer before and after the run exists.
"""

from __future__ import annotations

from compute_worker.domain import errors
from compute_worker.domain.ports.deployments import ActiveDeployment
from compute_worker.domain.ports.security import RunKeyDeriver
from compute_worker.domain.ports.world import WorldReader


class GetEncryptionKey:
    def __init__(
        self, reader: WorldReader, deriver: RunKeyDeriver, deployments: ActiveDeployment
    ) -> None:
        self._reader = reader
        self._deriver = deriver
        self._deployments = deployments

    async def execute(self, run_id: str, deployment_id: str | None = None) -> bytes | None:
        if not run_id:
            raise errors.InvalidRequest("runId is required", {"field": "runId"})
        if deployment_id is None:
            run = await self._reader.get_run(run_id)
            deployment_id = run.deployment_id if run is not None else None
        if deployment_id is None:
            deployment_id = await self._deployments.active_deployment_id()
        if deployment_id is None:
            raise errors.NoActiveDeployment(
                "The run does not exist and no deployment is active; pass deploymentId",
                {"runId": run_id},
            )
        return self._deriver.derive(deployment_id, run_id)


class GetDeploymentId:
    """``getDeploymentId()``: the active deployment (world.md §7)."""

    def __init__(self, deployments: ActiveDeployment) -> None:
        self._deployments = deployments

    async def execute(self) -> str:
        deployment_id = await self._deployments.active_deployment_id()
        if deployment_id is None:
            raise errors.NoActiveDeployment("No deployment is active")
        return deployment_id
