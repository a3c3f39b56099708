"""The operator's schedule commands, on the database like ``keys`` and ``audit`` (no server
needed; a running worker sees the change at its next pass):

    compute-worker schedules list [--json]
    compute-worker schedules pause NAME | resume NAME
    compute-worker schedules trigger NAME [--idempotency-key K]
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from compute_worker.app.cli import DATABASE_SETTINGS, run_async, settings_options
from compute_worker.app.container import Container
from compute_worker.app.logs import configure_logging
from compute_worker.app.runtime import Runtime
from compute_worker.app.settings import Settings
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.use_cases.schedules import ScheduleView

T = TypeVar("T")
CLI_SCOPE = "cli"  # the idempotency scope of runs triggered from the command line


def _context(command: str, name: str) -> RequestContext:
    return RequestContext("CLI", f"schedules {command} {name}", f"cli-schedules-{command}")


def _on_database(settings: Settings, work: Callable[[Container], Awaitable[T]]) -> T:
    async def go() -> T:
        async with Runtime(settings) as container:
            return await work(container)

    configure_logging("warning")
    return run_async(go())


def _line(view: ScheduleView) -> str:
    state = view.state
    upcoming = "paused" if view.next_fire_at is None else view.next_fire_at.isoformat()
    return "\t".join([state.name, state.schedule.cron, state.schedule.timezone, view.catch_up,
                      upcoming, state.deployment_id])  # fmt: skip


def _json(view: ScheduleView) -> dict[str, Any]:
    state = view.state
    return {
        "name": state.name,
        "deploymentId": state.deployment_id,
        "cron": state.schedule.cron,
        "timezone": state.schedule.timezone,
        "catchUp": view.catch_up,
        "paused": state.paused,
        "lastSlot": state.last_slot.isoformat(),
        "nextFireAt": None if view.next_fire_at is None else view.next_fire_at.isoformat(),
    }


@click.group()
def schedules() -> None:
    """List, pause, resume and trigger the active deployment's schedules."""


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@settings_options(DATABASE_SETTINGS)
def schedules_list(settings: Settings, as_json: bool) -> None:
    """Each schedule: name, cron, timezone, catch-up, next fire time (or paused), deployment."""
    found = _on_database(settings, lambda c: c.list_schedules().execute())
    for view in found:
        print(json.dumps(_json(view)) if as_json else _line(view))


def _set_paused(settings: Settings, name: str, paused: bool) -> None:
    command = "pause" if paused else "resume"

    async def change(container: Container) -> ScheduleView:
        await container.pause_schedule().execute(name, paused, _context(command, name))
        return await container.list_schedules().get(name)

    print(_line(_on_database(settings, change)))


@schedules.command("pause")
@click.argument("name")
@settings_options(DATABASE_SETTINGS)
def schedules_pause(settings: Settings, name: str) -> None:
    """Start no run of NAME until it is resumed."""
    _set_paused(settings, name, True)


@schedules.command("resume")
@click.argument("name")
@settings_options(DATABASE_SETTINGS)
def schedules_resume(settings: Settings, name: str) -> None:
    """Resume NAME from now: the slots that came due while it was paused are not started."""
    _set_paused(settings, name, False)


@schedules.command("trigger")
@click.argument("name")
@click.option("--idempotency-key", help="The same key starts the run once.")
@settings_options(DATABASE_SETTINGS)
def schedules_trigger(settings: Settings, name: str, idempotency_key: str | None) -> None:
    """Start NAME now, outside its calendar; prints the run id."""
    context = _context("trigger", name)
    started = _on_database(
        settings, lambda c: c.trigger_schedule().execute(name, idempotency_key, CLI_SCOPE, context)
    )
    print(started.run.run_id)
