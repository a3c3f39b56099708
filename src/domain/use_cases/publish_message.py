"""PublishMessage: ``queue(queueName, message, opts)`` (world.md §4, decision D9).

A duplicate idempotency key within the retention window returns the original
message id and enqueues nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from domain import errors, ids
from domain.audit import RequestContext, audit_entry
from domain.ids import IdFactory
from domain.ports.clock import Clock
from domain.ports.streams import Signal
from domain.ports.transactions import Transaction, UnitOfWork
from domain.validation import check_length
from domain.world import MAX_DEPLOYMENT_ID, MAX_NAME, QUEUE_NAME, QUEUE_TOPIC, QueueMessage

MAX_DELAY_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Publish:
    queue_name: str
    payload: Any
    deployment_id: str | None = None
    idempotency_key: str | None = None
    delay_seconds: float = 0
    headers: dict[str, str] = field(default_factory=dict)


class PublishMessage:
    def __init__(
        self,
        uow: UnitOfWork,
        ids: IdFactory,
        clock: Clock,
        signal: Signal,
        key_retention: timedelta = timedelta(hours=24),
    ) -> None:
        self._uow = uow
        self._ids = ids
        self._clock = clock
        self._signal = signal
        self._key_retention = key_retention

    async def execute(self, cmd: Publish, context: RequestContext | None = None) -> str:
        _validate(cmd)

        def work(tx: Transaction) -> str:
            message_id = self.enqueue(tx, cmd)
            if context is not None:
                entry = audit_entry(context, "queue.publish", 200, self._clock.now(),
                                    messageId=message_id, queueName=cmd.queue_name)  # fmt: skip
                tx.append_audit(entry)
            return message_id

        return await self._uow.run(work)

    def enqueue(self, tx: Transaction, cmd: Publish) -> str:
        """Synchronous, so another use case can enqueue inside its own transaction."""
        now = self._clock.now()
        if cmd.idempotency_key:
            existing = tx.find_queued_by_key(cmd.idempotency_key, now)
            if existing is not None:
                return existing
        message = QueueMessage(
            message_id=self._ids.new(ids.MESSAGE),
            queue_name=cmd.queue_name,
            payload=cmd.payload,
            attempt=0,
            created_at=now,
            deployment_id=cmd.deployment_id,
            idempotency_key=cmd.idempotency_key or None,
            headers=dict(cmd.headers),
        )
        expires = now + self._key_retention if cmd.idempotency_key else None
        tx.insert_message(message, now + timedelta(seconds=cmd.delay_seconds), expires)
        tx.after_commit(lambda: self._signal.notify(QUEUE_TOPIC))
        return message.message_id


def _validate(cmd: Publish) -> None:
    check_length(cmd.queue_name, MAX_NAME, "queueName")
    check_length(cmd.idempotency_key, MAX_NAME, "opts.idempotencyKey")
    if cmd.deployment_id is not None:
        check_length(cmd.deployment_id, MAX_DEPLOYMENT_ID, "opts.deploymentId")
    if not QUEUE_NAME.match(cmd.queue_name):
        raise errors.InvalidRequest(
            "queueName must be __wkf_workflow_<name> or __wkf_step_<name> "
            "with letters, digits and _-./@ only",
            {"field": "queueName"},
        )
    if not 0 <= cmd.delay_seconds <= MAX_DELAY_SECONDS:
        raise errors.InvalidRequest(
            f"delaySeconds must be between 0 and {MAX_DELAY_SECONDS}",
            {"field": "opts.delaySeconds"},
        )
