"""ResumeHook: ``POST /v1/runs/resume`` — deliver a payload to the live hook holding a
token (``hook_received``) and wake its run through the workflow queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain import errors
from domain.audit import RequestContext, audit_entry
from domain.ports.clock import Clock
from domain.ports.transactions import Transaction, UnitOfWork
from domain.use_cases.proxy_world_event import ProxyWorldEvent
from domain.use_cases.publish_message import Publish, PublishMessage
from domain.world import EventRequest, EventType, workflow_queue


@dataclass(frozen=True, slots=True)
class Resumed:
    run_id: str
    hook_id: str
    token: str


class ResumeHook:
    def __init__(
        self, uow: UnitOfWork, clock: Clock, events: ProxyWorldEvent, queue: PublishMessage
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._events = events
        self._queue = queue

    async def execute(self, token: str, payload: Any, context: RequestContext) -> Resumed:
        if not token:
            raise errors.InvalidRequest("token must be a non-empty string", {"field": "token"})
        return await self._uow.run(lambda tx: self.resume(tx, token, payload, context))

    def resume(
        self, tx: Transaction, token: str, payload: Any, context: RequestContext | None
    ) -> Resumed:
        """Inside ``tx``; shared with webhook deliveries that resume a hook."""
        hook = tx.get_hook_by_token(token)
        if hook is None:
            raise errors.HookNotFound("No live hook holds this token")
        run = tx.lock_run(hook.run_id)
        if run is None or run.is_terminal:
            status = run.status if run is not None else "missing"
            raise errors.RunAlreadyTerminal(
                f"Run {hook.run_id} is already {status}", {"runId": hook.run_id}
            )
        request = EventRequest(EventType.HOOK_RECEIVED, hook.hook_id, None, {"payload": payload})
        self._events.record(tx, run.run_id, request)
        self._queue.enqueue(
            tx,
            Publish(workflow_queue(run.workflow_name), {"runId": run.run_id},
                    deployment_id=run.deployment_id),
        )  # fmt: skip
        if context is not None:
            tx.append_audit(audit_entry(context, "runs.resume", 202, self._clock.now(), run.run_id))
        return Resumed(run.run_id, hook.hook_id, hook.token)
