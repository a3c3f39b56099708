"""Schedules: workflows of the active deployment started on a cron calendar.

A deployment declares a schedule per workflow (a graph's ``Schedule`` trigger, a Python
``@workflow(schedule=…)``). Activating a deployment makes its schedules the current set
in the same transaction (``ScheduleState`` rows, one per workflow name), so the switch
is atomic. Each row keeps the latest slot already handled (``last_slot``, the
watermark); the scheduler starts a run per due slot with ``schedule:<name>:<slot>`` as
its idempotency key, so a slot starts at most once whichever worker sees it first.

Catch-up (a setting, or per schedule): a slot that came due more than ``late`` ago is
*missed* (the worker was down or busy). ``skip`` starts no missed slot, ``one`` starts
the latest due slot only (one run for a whole outage), ``all`` starts each slot, oldest
first, at most ``MAX_CATCH_UP`` per pass. A schedule's watermark carries over to the next
deployment that schedules the same workflow name; a new one starts at activation
(nothing before it is missed); a paused one starts nothing and resumes at the time of its
resume.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the ports name this module's types
    from compute_worker.domain.deployments import Deployment
    from compute_worker.domain.ports.schedules import CronCalendar
    from compute_worker.domain.ports.transactions import Transaction

CatchUp = Literal["skip", "one", "all"]
CATCH_UP_POLICIES: tuple[str, ...] = ("skip", "one", "all")
DEFAULT_CATCH_UP: CatchUp = "one"
MAX_CATCH_UP = 100  # runs started per schedule per pass; the rest on the next pass
DEFAULT_TIMEZONE = "UTC"
KEY_PREFIX = "schedule:"


@dataclass(frozen=True, slots=True)
class Schedule:
    """What a deployment declares for one workflow."""

    cron: str
    timezone: str = DEFAULT_TIMEZONE
    catch_up: CatchUp | None = None  # None: the worker's setting

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cron": self.cron, "timezone": self.timezone}
        if self.catch_up is not None:
            out["catchUp"] = self.catch_up
        return out


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """A schedule of the active deployment and what was started of it."""

    name: str  # the workflow's name
    deployment_id: str
    schedule: Schedule
    last_slot: datetime  # every slot up to and including it is handled
    paused: bool = False
    updated_at: datetime | None = None


def catch_up_policy(value: Any) -> CatchUp | None:
    """The policy named ``value`` (None when it names none)."""
    if value == "skip":
        return "skip"
    if value == "one":
        return "one"
    if value == "all":
        return "all"
    return None


def slots_to_start(
    calendar: CronCalendar, state: ScheduleState, policy: CatchUp, now: datetime, late: timedelta
) -> tuple[list[datetime], datetime]:
    """The slots of ``state`` to start at ``now`` under ``policy``, oldest first, and the
    watermark once they are: ``one`` starts the latest due slot, on time or not; ``skip``
    starts it only when on time (due less than ``late`` ago); ``all`` starts every slot
    after the watermark, ``MAX_CATCH_UP`` at most."""
    cron, zone, after = state.schedule.cron, state.schedule.timezone, state.last_slot
    if policy == "all":
        slots = calendar.slots(cron, zone, after, now, MAX_CATCH_UP)
        return slots, (slots[-1] if slots else after)
    latest = calendar.latest(cron, zone, now)
    if latest is None or latest <= after:
        return [], after
    on_time = now - latest <= late
    return ([latest] if policy == "one" or on_time else []), latest


def switch_schedules(tx: Transaction, deployment: Deployment, now: datetime) -> None:
    """Make ``deployment``'s schedules the current set (inside its activation's
    transaction): a workflow name scheduled before keeps its watermark and pause, a new
    one starts at ``now``, one the deployment does not schedule is dropped."""
    current = {state.name: state for state in tx.lock_schedules()}
    wanted = deployment.schedules
    for name in current.keys() - wanted.keys():
        tx.delete_schedule(name)
    for name, schedule in wanted.items():
        known = current.get(name)
        if known is None:
            state = ScheduleState(name, deployment.deployment_id, schedule, now, False, now)
        else:
            state = replace(known, deployment_id=deployment.deployment_id, schedule=schedule,
                            updated_at=now)  # fmt: skip
        tx.put_schedule(state)


def schedule_from_wire(value: Any) -> Schedule | None:
    """The schedule as ``Schedule.wire`` wrote it (stored with the deployment's workflows)."""
    if not isinstance(value, dict):
        return None
    return Schedule(str(value["cron"]), str(value.get("timezone") or DEFAULT_TIMEZONE),
                    catch_up_policy(value.get("catchUp")))  # fmt: skip


def idempotency_key(name: str, slot: datetime) -> str:
    return f"{KEY_PREFIX}{name}:{slot.isoformat()}"


def run_input(name: str, slot: datetime, *, manual: bool = False) -> list[Any]:
    """A scheduled run's input: one argument naming the schedule and its slot."""
    tick: dict[str, Any] = {"schedule": name, "scheduledAt": slot.isoformat()}
    if manual:
        tick["manual"] = True
    return [tick]
