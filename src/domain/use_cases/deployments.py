"""Deployment use cases: CreateDeployment, ActivateDeployment, GetDeployment.

A deployment is immutable once created; activation only moves the pointer, so
runs bound to an older deployment keep running on it, and makes the deployment's
schedules the current ones in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from compute_worker.domain import errors, ids
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.deployments import (
    ACTIVE,
    DEFAULT_ENTRYPOINTS,
    KINDS,
    Deployment,
    DeploymentKind,
    Endpoint,
    check_bundle,
    clean_bundle_path,
)
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.outbound import OutboundPolicy
from compute_worker.domain.ports.bundles import ArtifactStore, BundleLoader
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.deployments import DeploymentReader
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.schedules import switch_schedules
from compute_worker.domain.wdk import check_endpoint, endpoint_digest


@dataclass(frozen=True, slots=True)
class NewDeployment:
    kind: str
    files: Mapping[str, bytes]
    entrypoint: str | None = None
    metadata: dict[str, Any] | None = None
    endpoint: Endpoint | None = None  # kind "wdk": the app, instead of files


class CreateDeployment:
    def __init__(
        self,
        uow: UnitOfWork,
        ids: IdFactory,
        clock: Clock,
        artifacts: ArtifactStore,
        loader: BundleLoader,
        delivery: OutboundPolicy,
    ) -> None:
        self._uow = uow
        self._ids = ids
        self._clock = clock
        self._artifacts = artifacts
        self._loader = loader
        self._delivery = delivery  # where a wdk app's URL may point

    async def execute(self, cmd: NewDeployment, context: RequestContext) -> Deployment:
        kind = _kind(cmd.kind)
        if kind == "wdk":
            return await self._insert(self._app(cmd), context)
        if cmd.endpoint is not None:
            raise errors.InvalidRequest(
                'endpoint is for kind "wdk" only; this deployment is a bundle',
                {"field": "endpoint"},
            )
        entrypoint = clean_bundle_path(cmd.entrypoint or DEFAULT_ENTRYPOINTS[kind])
        check_bundle(cmd.files, entrypoint)
        workflows = await self._loader.describe(kind, cmd.files, entrypoint)
        digest = await self._artifacts.put(cmd.files)  # stored before the row that names it
        now = self._clock.now()
        deployment = Deployment(
            deployment_id=self._ids.new(ids.DEPLOYMENT),
            kind=kind,
            digest=digest,
            workflows=workflows,
            created_at=now,
            entrypoint=entrypoint,
            metadata=cmd.metadata,
        )
        return await self._insert(deployment, context)

    def _app(self, cmd: NewDeployment) -> Deployment:
        """A ``wdk`` deployment: an app's endpoint, no bundle and no manifest (the app
        knows its workflows; triggering checks nothing but the name's shape)."""
        if cmd.endpoint is None:
            raise errors.InvalidRequest(
                'endpoint is required for kind "wdk": {"url": "http://host:port"}',
                {"field": "endpoint"},
            )
        if cmd.files:
            raise errors.InvalidRequest(
                'a "wdk" deployment holds no files: the app runs elsewhere', {"field": "files"}
            )
        endpoint = check_endpoint(cmd.endpoint, self._delivery)
        return Deployment(
            deployment_id=self._ids.new(ids.DEPLOYMENT),
            kind="wdk",
            digest=endpoint_digest(endpoint),
            workflows=(),
            created_at=self._clock.now(),
            metadata=cmd.metadata,
            endpoint=endpoint,
        )

    async def _insert(self, deployment: Deployment, context: RequestContext) -> Deployment:
        now = deployment.created_at

        def insert(tx: Transaction) -> Deployment:
            tx.insert_deployment(deployment)
            tx.append_audit(
                audit_entry(context, "deployments.create", 201, now,
                            deploymentId=deployment.deployment_id)
            )  # fmt: skip
            return deployment

        return await self._uow.run(insert)


class ActivateDeployment:
    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, deployment_id: str, context: RequestContext) -> Deployment:
        def activate(tx: Transaction) -> Deployment:
            deployment = tx.get_deployment(deployment_id)
            if deployment is None:
                raise _not_found(deployment_id)
            now = self._clock.now()
            tx.set_active_deployment(deployment_id, now)
            switch_schedules(tx, deployment, now)
            tx.append_audit(
                audit_entry(context, "deployments.activate", 200, now, deploymentId=deployment_id)
            )
            return replace(deployment, active=True)

        return await self._uow.run(activate)


class GetDeployment:
    def __init__(self, reader: DeploymentReader) -> None:
        self._reader = reader

    async def execute(self, deployment_id: str) -> Deployment:
        """``active`` is a fixed word naming the active deployment, never an id."""
        if deployment_id == ACTIVE:
            active = await self._reader.active_deployment_id()
            if active is None:
                raise errors.NoActiveDeployment("No deployment is active")
            deployment_id = active
        deployment = await self._reader.get(deployment_id)
        if deployment is None:
            raise _not_found(deployment_id)
        return deployment


def _kind(kind: str) -> DeploymentKind:
    if kind == "python":
        return "python"
    if kind == "graph":
        return "graph"
    if kind == "wdk":
        return "wdk"
    raise errors.InvalidRequest(f"kind must be one of {', '.join(KINDS)}", {"field": "kind"})


def _not_found(deployment_id: str) -> errors.DeploymentNotFound:
    return errors.DeploymentNotFound(
        f"Deployment {deployment_id} not found", {"deploymentId": deployment_id}
    )
