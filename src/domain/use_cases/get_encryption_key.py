"""GetEncryptionKey (decision D10): the run's AES-256 key, derived, never stored.

The deployment id that goes into the derivation is the caller's, else the run's,
else the active deployment's — the same answer before and after the run exists.
"""

from __future__ import annotations

from compute_worker.domain import errors
from compute_worker.domain.ports.deployments import ActiveDeployment
from compute_worker.domain.ports.security import RunKeyDeriver
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.ports.world import WorldReader
from compute_worker.domain.validation import check_length
from compute_worker.domain.wdk import AppAnnouncements
from compute_worker.domain.world import MAX_DEPLOYMENT_ID


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
    """``getDeploymentId()`` (world.md §7, LANE.md §3): the deployment the caller names
    (``x-compute-deployment-id``: an app's own, whose announced URL is recorded), else
    the active deployment."""

    def __init__(
        self, deployments: ActiveDeployment, uow: UnitOfWork, apps: AppAnnouncements
    ) -> None:
        self._deployments = deployments
        self._uow = uow
        self._apps = apps

    async def execute(self, named: str | None = None, app_url: str | None = None) -> str:
        if named is not None:
            check_length(named, MAX_DEPLOYMENT_ID, "x-compute-deployment-id")
            return await self._uow.run(lambda tx: self._named(tx, named, app_url))
        deployment_id = await self._deployments.active_deployment_id()
        if deployment_id is None:
            raise errors.NoActiveDeployment("No deployment is active")
        return deployment_id

    def _named(self, tx: Transaction, deployment_id: str, app_url: str | None) -> str:
        if tx.get_deployment(deployment_id) is None:
            raise errors.DeploymentNotFound(
                f"Deployment {deployment_id} not found", {"deploymentId": deployment_id}
            )
        if app_url:
            self._apps.announce(tx, deployment_id, app_url)
        return deployment_id
