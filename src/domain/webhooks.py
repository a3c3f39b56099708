"""Inbound webhook providers: who may call ``/v1/webhooks/:provider`` and what a
delivery does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMES = ("github", "stripe", "standard")


@dataclass(frozen=True, slots=True)
class WebhookProvider:
    """``trigger_workflow`` starts a run with ``[delivery]`` as input;
    ``resume_token_field`` (a dotted path into the JSON payload) names the hook to resume."""

    name: str
    scheme: str
    secret: str
    trigger_workflow: str | None = None
    deployment_id: str | None = None
    resume_token_field: str | None = None


def field_at(payload: Any, dotted: str) -> Any:
    """``payload["a"]["b"]`` for ``"a.b"``; None when any part is missing."""
    value = payload
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
