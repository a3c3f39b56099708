"""``resolveData`` (world.md §3.3): which payload fields a ``none`` read leaves out."""

from __future__ import annotations

from dataclasses import replace

from compute_worker.domain.world import Event, EventType

EVENT_REF_FIELDS: dict[EventType, tuple[str, ...]] = {
    EventType.RUN_CREATED: ("input",),
    EventType.RUN_COMPLETED: ("output",),
    EventType.RUN_FAILED: ("error",),
    EventType.STEP_CREATED: ("input",),
    EventType.STEP_COMPLETED: ("result",),
    EventType.STEP_FAILED: ("error",),
    EventType.STEP_RETRYING: ("error",),
    EventType.HOOK_CREATED: ("metadata",),
    EventType.HOOK_RECEIVED: ("payload",),
}


def strip_event_refs(event: Event) -> Event:
    """The event without its payload fields; other eventData fields stay."""
    refs = EVENT_REF_FIELDS.get(event.event_type)
    if refs is None:
        return event
    data = event.event_data
    if not isinstance(data, dict):
        return replace(event, event_data=None)
    kept = {name: value for name, value in data.items() if name not in refs}
    return replace(event, event_data=kept or None)
