"""TriggerRun: ``POST /v1/runs``. One transaction writes the idempotency record,
the run with its ``run_created`` event, the workflow's queue message and the
audit entry — or nothing."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from domain import errors, ids
from domain.audit import RequestContext, audit_entry
from domain.deployments import Deployment
from domain.idempotency import DEFAULT_RETENTION, IdempotencyRecord, check_key, request_hash
from domain.ids import IdFactory
from domain.ports.clock import Clock
from domain.ports.transactions import Transaction, UnitOfWork
from domain.use_cases.proxy_world_event import ProxyWorldEvent
from domain.use_cases.publish_message import Publish, PublishMessage
from domain.world import EventRequest, EventType, Run, workflow_queue


@dataclass(frozen=True, slots=True)
class Trigger:
    workflow_name: str
    idempotency_key: str | None
    scope: str  # the calling API key's id: idempotency keys are per key
    input: list[Any] = field(default_factory=list)
    deployment_id: str | None = None
    execution_context: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "workflowName": self.workflow_name,
            "input": self.input,
            "deploymentId": self.deployment_id,
            "executionContext": self.execution_context,
        }


@dataclass(frozen=True, slots=True)
class Triggered:
    run: Run
    replayed: bool = False


class TriggerRun:
    def __init__(
        self,
        uow: UnitOfWork,
        ids: IdFactory,
        clock: Clock,
        events: ProxyWorldEvent,
        queue: PublishMessage,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._uow = uow
        self._ids = ids
        self._clock = clock
        self._events = events
        self._queue = queue
        self._retention = retention

    async def execute(self, cmd: Trigger, context: RequestContext) -> Triggered:
        key = check_key(cmd.idempotency_key)
        digest = request_hash(cmd.payload())
        return await self._uow.run(lambda tx: self._trigger(tx, cmd, key, digest, context))

    def _trigger(
        self, tx: Transaction, cmd: Trigger, key: str, digest: str, context: RequestContext
    ) -> Triggered:
        now = self._clock.now()
        claim = IdempotencyRecord(cmd.scope, key, digest, now + self._retention)
        holder = tx.claim_idempotency(claim, now)
        if holder is not None:
            if holder.request_hash != digest or holder.run is None:
                raise errors.IdempotencyConflict(
                    "This Idempotency-Key was used with a different request",
                    {"idempotencyKey": key},
                )
            return Triggered(holder.run, replayed=True)
        run = self.start_run(tx, cmd.workflow_name, cmd.input, cmd.deployment_id,
                             cmd.execution_context)  # fmt: skip
        tx.complete_idempotency(replace(claim, status=202, run=run))
        tx.append_audit(audit_entry(context, "runs.trigger", 202, now, run.run_id))
        return Triggered(run)

    def start_run(
        self,
        tx: Transaction,
        workflow_name: str,
        run_input: list[Any],
        deployment_id: str | None,
        execution_context: dict[str, Any] | None,
    ) -> Run:
        """Create and enqueue a run inside ``tx`` (shared with webhook deliveries)."""
        deployment = _deployment(tx, deployment_id)
        if deployment.workflow(workflow_name) is None:
            names = [w.name for w in deployment.workflows]
            raise errors.WorkflowNotFound(
                f'Workflow "{workflow_name}" is not in deployment {deployment.deployment_id}',
                {"deploymentId": deployment.deployment_id, "workflows": names},
            )
        data: dict[str, Any] = {
            "deploymentId": deployment.deployment_id,
            "workflowName": workflow_name,
            "input": run_input,
        }
        if execution_context is not None:
            data["executionContext"] = execution_context
        run_id = self._ids.new(ids.RUN)
        result = self._events.record(
            tx, run_id, EventRequest(EventType.RUN_CREATED, None, None, data)
        )
        assert result.run is not None
        self._queue.enqueue(
            tx,
            Publish(workflow_queue(workflow_name), {"runId": run_id},
                    deployment_id=deployment.deployment_id),
        )  # fmt: skip
        return result.run


def _deployment(tx: Transaction, deployment_id: str | None) -> Deployment:
    if deployment_id is None:
        deployment_id = tx.active_deployment_id()
        if deployment_id is None:
            raise errors.NoActiveDeploymentToTrigger(
                "No deployment is active; activate one or pass deploymentId"
            )
    deployment = tx.get_deployment(deployment_id)
    if deployment is None:
        raise errors.DeploymentNotFound(
            f"Deployment {deployment_id} not found", {"deploymentId": deployment_id}
        )
    return deployment
