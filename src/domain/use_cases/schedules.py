"""Schedule use cases: RunSchedules (the scheduler's pass), ListSchedules, PauseSchedule,
ResumeSchedule, TriggerSchedule (``domain/schedules.py`` has the rules).

A pass handles each schedule in a transaction of its own: it locks the schedule's row
(PostgreSQL: ``FOR UPDATE``, so a second worker waits and then finds the slot handled),
checks that the row still belongs to the active deployment, starts the slots due through
``start_once`` with the slot's idempotency key, and moves the watermark — all or nothing.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from compute_worker.domain import errors, ids
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.idempotency import DEFAULT_RETENTION
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.schedules import CronCalendar, ScheduleReader
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.schedules import (
    CatchUp,
    ScheduleState,
    idempotency_key,
    run_input,
    slots_to_start,
)
from compute_worker.domain.triggering import Trigger, Triggered, start_once
from compute_worker.domain.world_writes import WorldWrites

log = logging.getLogger(__name__)

SCHEDULER_SCOPE = "scheduler"  # the idempotency scope of scheduled slots
SCHEDULER = RequestContext("SCHEDULE", "/v1/schedules", "scheduler")  # who the audit names


@dataclass(frozen=True, slots=True)
class ScheduleView:
    state: ScheduleState
    catch_up: CatchUp  # in force: the schedule's own or the worker's setting
    next_fire_at: datetime | None  # None while paused


class RunSchedules:
    def __init__(
        self,
        uow: UnitOfWork,
        reader: ScheduleReader,
        calendar: CronCalendar,
        clock: Clock,
        writes: WorldWrites,
        catch_up: CatchUp,
        late: timedelta,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._uow = uow
        self._reader = reader
        self._calendar = calendar
        self._clock = clock
        self._writes = writes
        self._catch_up = catch_up
        self._late = late
        self._retention = retention

    async def execute(self) -> list[Triggered]:
        """Start what is due now; the runs started (none replayed)."""
        started: list[Triggered] = []
        for state in await self._reader.list_schedules():
            if not state.paused:
                started += await self._uow.run(functools.partial(self._advance, name=state.name))
        return started

    def _advance(self, tx: Transaction, name: str) -> list[Triggered]:
        state = tx.lock_schedule(name)
        if state is None or state.paused or state.deployment_id != tx.active_deployment_id():
            return []  # switched or paused since it was read
        now = self._clock.now()
        policy = state.schedule.catch_up or self._catch_up
        slots, mark = slots_to_start(self._calendar, state, policy, now, self._late)
        if mark == state.last_slot:
            return []
        started: list[Triggered] = []
        for slot in slots:
            cmd = Trigger(
                workflow_name=name,
                idempotency_key=idempotency_key(name, slot),
                scope=SCHEDULER_SCOPE,
                input=run_input(name, slot),
                deployment_id=state.deployment_id,
                execution_context={"schedule": run_input(name, slot)[0]},
            )
            try:
                done = start_once(tx, self._writes, cmd, SCHEDULER, now, self._retention,
                                  "schedules.fire")  # fmt: skip
            except errors.IdempotencyConflict:
                done = None  # started under another deployment's request: handled
            if done is not None and not done.replayed:
                started.append(done)
        if not slots:
            log.info("schedule slot missed, skipped (catch-up: skip)",
                     extra={"schedule": name, "slot": mark.isoformat()})  # fmt: skip
        tx.put_schedule(replace(state, last_slot=mark, updated_at=now))
        return started


class ListSchedules:
    def __init__(self, reader: ScheduleReader, calendar: CronCalendar, clock: Clock,
                 catch_up: CatchUp) -> None:  # fmt: skip
        self._reader = reader
        self._calendar = calendar
        self._clock = clock
        self._catch_up = catch_up

    async def execute(self) -> list[ScheduleView]:
        return [self._view(state) for state in await self._reader.list_schedules()]

    async def get(self, name: str) -> ScheduleView:
        state = await self._reader.get_schedule(name)
        if state is None:
            raise _not_found(name)
        return self._view(state)

    def _view(self, state: ScheduleState) -> ScheduleView:
        policy = state.schedule.catch_up or self._catch_up
        if state.paused:
            return ScheduleView(state, policy, None)
        after = max(state.last_slot, self._clock.now())
        upcoming = self._calendar.next_after(state.schedule.cron, state.schedule.timezone, after)
        return ScheduleView(state, policy, upcoming)


class PauseSchedule:
    """``paused=True`` stops a schedule; ``False`` resumes it from now (the slots that came
    due while it was paused are never started)."""

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, name: str, paused: bool, context: RequestContext) -> ScheduleState:
        def change(tx: Transaction) -> ScheduleState:
            state = tx.lock_schedule(name)
            if state is None:
                raise _not_found(name)
            now = self._clock.now()
            if state.paused != paused:
                mark = state.last_slot if paused else max(state.last_slot, now)
                state = replace(state, paused=paused, last_slot=mark, updated_at=now)
                tx.put_schedule(state)
            action = "schedules.pause" if paused else "schedules.resume"
            tx.append_audit(audit_entry(context, action, 200, now, schedule=name))
            return state

        return await self._uow.run(change)


class TriggerSchedule:
    """Start a scheduled workflow now, outside its calendar (paused or not): its input
    names the schedule with ``manual: true``; the caller's idempotency key (or a new one)."""

    def __init__(self, uow: UnitOfWork, clock: Clock, ids: IdFactory, writes: WorldWrites,
                 retention: timedelta = DEFAULT_RETENTION) -> None:  # fmt: skip
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._writes = writes
        self._retention = retention

    async def execute(self, name: str, key: str | None, scope: str,
                      context: RequestContext) -> Triggered:  # fmt: skip
        key = key or f"schedule:{name}:manual:{self._ids.new(ids.RUN).removeprefix(ids.RUN)}"

        def trigger(tx: Transaction) -> Triggered:
            state = tx.lock_schedule(name)
            if state is None:
                raise _not_found(name)
            now = self._clock.now().replace(microsecond=0)
            tick = run_input(name, now, manual=True)
            cmd = Trigger(name, key, scope, tick, state.deployment_id, {"schedule": tick[0]})
            return start_once(tx, self._writes, cmd, context, now, self._retention,
                              "schedules.trigger", {"triggerSchedule": name})  # fmt: skip

        return await self._uow.run(trigger)


def _not_found(name: str) -> errors.ScheduleNotFound:
    return errors.ScheduleNotFound(
        f"No schedule named {name!r} in the active deployment", {"schedule": name}
    )
