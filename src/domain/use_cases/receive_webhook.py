"""ReceiveWebhook: verify a provider's signature, store the delivery (deduplicated by
delivery id) and act on it in the same transaction, then hand it to ``on_webhook``."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.ports.webhooks import SignatureVerifier
from compute_worker.domain.webhooks import WebhookProvider, field_at
from compute_worker.domain.world_writes import WorldWrites

log = logging.getLogger(__name__)
WebhookCallback = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Delivered:
    delivery_id: str
    duplicate: bool = False
    run_id: str | None = None


class ReceiveWebhook:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        providers: Mapping[str, WebhookProvider],
        verifiers: Mapping[str, SignatureVerifier],
        writes: WorldWrites,
        on_webhook: WebhookCallback | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._providers = providers
        self._verifiers = verifiers
        self._writes = writes
        self._on_webhook = on_webhook

    async def execute(
        self, name: str, headers: Mapping[str, str], body: bytes, context: RequestContext
    ) -> Delivered:
        provider = self._providers.get(name)
        if provider is None:
            raise errors.UnknownProvider(f"No webhook provider named {name!r}", {"provider": name})
        verifier = self._verifiers[provider.scheme]
        delivery_id = verifier.verify(headers, body, provider.secret)
        delivery_id = delivery_id or "sha256:" + hashlib.sha256(body).hexdigest()
        delivery = {"provider": name, "deliveryId": delivery_id, "payload": _payload(body)}
        result = await self._uow.run(lambda tx: self._store(tx, provider, delivery, context))
        if not result.duplicate and self._on_webhook is not None:
            try:
                await self._on_webhook({**delivery, "runId": result.run_id})
            except Exception:  # stored and acted on already; the callback is best effort
                log.exception("on_webhook callback failed", extra={"deliveryId": delivery_id})
        return result

    def _store(
        self,
        tx: Transaction,
        provider: WebhookProvider,
        delivery: dict[str, Any],
        context: RequestContext,
    ) -> Delivered:
        delivery_id: str = delivery["deliveryId"]
        now = self._clock.now()
        if not tx.record_delivery(provider.name, delivery_id, delivery["payload"], now):
            return Delivered(delivery_id, duplicate=True)
        run_id = None
        if provider.trigger_workflow is not None:
            run = self._writes.start_run(
                tx, provider.trigger_workflow, [delivery], provider.deployment_id, None
            )
            run_id = run.run_id
        elif provider.resume_token_field is not None:
            token = field_at(delivery["payload"], provider.resume_token_field)
            if not isinstance(token, str) or not token:
                raise errors.InvalidRequest(
                    f"The delivery carries no hook token at {provider.resume_token_field}",
                    {"field": provider.resume_token_field},
                )
            run_id = self._writes.resume_hook(tx, token, delivery).run_id
        tx.append_audit(
            audit_entry(context, "webhooks.receive", 202, now, run_id,
                        provider=provider.name, deliveryId=delivery_id)
        )  # fmt: skip
        return Delivered(delivery_id, run_id=run_id)


def _payload(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return body.decode("utf-8", errors="replace")
