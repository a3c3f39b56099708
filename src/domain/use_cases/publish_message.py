"""PublishMessage: ``queue(queueName, message, opts)`` (world.md §4, decision D9).

A duplicate idempotency key within the retention window returns the original
message id and enqueues nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.validation import check_length
from compute_worker.domain.wdk import AppAnnouncements
from compute_worker.domain.world import MAX_DEPLOYMENT_ID, MAX_NAME, QUEUE_NAME, message_run_id
from compute_worker.domain.world_writes import WorldWrites

MAX_DELAY_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Publish:
    queue_name: str
    payload: Any
    deployment_id: str | None = None
    idempotency_key: str | None = None
    delay_seconds: float = 0
    headers: dict[str, str] = field(default_factory=dict)
    caller_deployment_id: str | None = None  # x-compute-deployment-id: the app's own
    app_url: str | None = None  # x-compute-app-url: where the app listens now


class PublishMessage:
    def __init__(
        self, uow: UnitOfWork, clock: Clock, writes: WorldWrites, apps: AppAnnouncements
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._writes = writes
        self._apps = apps

    async def execute(self, cmd: Publish, context: RequestContext | None = None) -> str:
        _validate(cmd)

        def work(tx: Transaction) -> str:
            deployment_id = _route(tx, cmd)
            if cmd.app_url and deployment_id is not None:
                self._apps.announce(tx, deployment_id, cmd.app_url)
            message_id = self._writes.enqueue(
                tx, cmd.queue_name, cmd.payload, deployment_id=deployment_id,
                idempotency_key=cmd.idempotency_key, delay_seconds=cmd.delay_seconds,
                headers=cmd.headers,
            )  # fmt: skip
            if context is not None:
                entry = audit_entry(context, "queue.publish", 200, self._clock.now(),
                                    messageId=message_id, queueName=cmd.queue_name)  # fmt: skip
                tx.append_audit(entry)
            return message_id

        return await self._uow.run(work)


def _route(tx: Transaction, cmd: Publish) -> str | None:
    """The deployment a message goes to: ``opts.deploymentId``, else the deployment of
    the run it names, else the caller's own (LANE.md §3)."""
    if cmd.deployment_id is not None:
        return cmd.deployment_id
    run_id = message_run_id(cmd.payload)
    run = tx.lock_run(run_id) if run_id is not None else None
    if run is not None and run.deployment_id is not None:
        return run.deployment_id
    return cmd.caller_deployment_id


def _validate(cmd: Publish) -> None:
    check_length(cmd.queue_name, MAX_NAME, "queueName")
    check_length(cmd.idempotency_key, MAX_NAME, "opts.idempotencyKey")
    if cmd.deployment_id is not None:
        check_length(cmd.deployment_id, MAX_DEPLOYMENT_ID, "opts.deploymentId")
    if not QUEUE_NAME.match(cmd.queue_name):
        raise errors.InvalidRequest(
            "queueName must be __wkf_workflow_<name> or __wkf_step_<name>, optionally "
            "namespaced (__<ns>_wkf_…), with printable ASCII only",
            {"field": "queueName"},
        )
    if not 0 <= cmd.delay_seconds <= MAX_DELAY_SECONDS:
        raise errors.InvalidRequest(
            f"delaySeconds must be between 0 and {MAX_DELAY_SECONDS}",
            {"field": "opts.delaySeconds"},
        )
