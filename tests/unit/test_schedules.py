"""Schedules over fakes and a clock held still: the catch-up policies, the watermark, pause
and resume, activation switching the set, and the cron calendar's edges (DST, seconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compute_worker.adapters.cron import CronsimCalendar
from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.deployments import Deployment, WorkflowInfo
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.schedules import CatchUp, Schedule
from compute_worker.domain.use_cases.deployments import ActivateDeployment
from compute_worker.domain.use_cases.schedules import (
    ListSchedules,
    PauseSchedule,
    RunSchedules,
    TriggerSchedule,
)
from compute_worker.domain.world_writes import WorldWrites
from tests.fakes import FakeSchedules, FakeStore, FakeUnitOfWork, FixedClock

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CTX = RequestContext("POST", "/v1/schedules", "corr-1", "key_A")
LATE = timedelta(seconds=30)


class World:
    def __init__(self, catch_up: CatchUp = "one") -> None:
        self.store, self.clock = FakeStore(), FixedClock(START)
        self.uow = FakeUnitOfWork(self.store)
        self.ids = IdFactory(clock_ms=self.clock.now_ms)
        self.writes = WorldWrites(self.ids, self.clock, LocalSignal())
        calendar, reader = CronsimCalendar(), FakeSchedules(self.store)
        self.tick = RunSchedules(self.uow, reader, calendar, self.clock, self.writes, catch_up,
                                 LATE)  # fmt: skip
        self.listing = ListSchedules(reader, calendar, self.clock, catch_up)
        self.pause = PauseSchedule(self.uow, self.clock)
        self.trigger = TriggerSchedule(self.uow, self.clock, self.ids, self.writes)

    async def deploy(self, **schedules: Schedule) -> str:
        deployment_id = f"dpl_{len(self.store.deployments)}"
        workflows = tuple(WorkflowInfo(name, (), spec) for name, spec in schedules.items())
        self.store.deployments[deployment_id] = Deployment(
            deployment_id, "python", "sha256:0", workflows, self.clock.now()
        )
        await ActivateDeployment(self.uow, self.clock).execute(deployment_id, CTX)
        return deployment_id

    async def pass_at(self, seconds: float) -> list[str]:
        """A scheduler pass ``seconds`` after the start; the slots it started."""
        self.clock.set(START + timedelta(seconds=seconds))
        started = await self.tick.execute()
        return [run.run.input[0]["scheduledAt"][11:19] for run in started]


MINUTELY = Schedule("* * * * *")


async def test_an_on_time_slot_starts_once_with_its_time_in_the_input() -> None:
    world = World()
    await world.deploy(report=MINUTELY)
    assert await world.pass_at(30) == []  # nothing due since activation
    assert await world.pass_at(61) == ["12:01:00"]
    assert await world.pass_at(62) == []  # the same slot, handled
    (run,) = world.store.runs.values()
    assert run.input == [{"schedule": "report", "scheduledAt": "2026-03-01T12:01:00+00:00"}]
    assert run.execution_context == {"schedule": run.input[0]}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("skip", []), ("one", ["12:05:00"]), ("all", ["12:01:00", "12:02:00", "12:03:00",
                                                   "12:04:00", "12:05:00"])],
)  # fmt: skip
async def test_catch_up_policies_after_an_outage(policy: CatchUp, expected: list[str]) -> None:
    world = World(policy)
    await world.deploy(report=MINUTELY)
    assert await world.pass_at(5 * 60 + 40) == expected  # 12:05:40: every slot is late
    assert await world.pass_at(6 * 60 + 1) == ["12:06:00"]  # then on time again


async def test_a_schedule_s_own_policy_wins_over_the_setting() -> None:
    world = World("skip")
    await world.deploy(report=Schedule("* * * * *", "UTC", "all"))
    assert len(await world.pass_at(3 * 60 + 50)) == 3


async def test_skip_still_starts_the_slot_that_is_on_time() -> None:
    world = World("skip")
    await world.deploy(report=MINUTELY)
    assert await world.pass_at(5 * 60 + 10) == ["12:05:00"]  # 12:01-12:04 skipped


async def test_pause_starts_nothing_and_resume_starts_from_now() -> None:
    world = World("all")
    await world.deploy(report=MINUTELY)
    await world.pause.execute("report", True, CTX)
    assert await world.pass_at(5 * 60 + 40) == []
    (view,) = await world.listing.execute()
    assert view.state.paused and view.next_fire_at is None
    world.clock.set(START + timedelta(minutes=6, seconds=10))
    await world.pause.execute("report", False, CTX)
    assert await world.pass_at(6 * 60 + 30) == []  # 12:01-12:06 came due while paused
    assert await world.pass_at(7 * 60 + 1) == ["12:07:00"]
    actions = [entry.action for entry in world.store.audit]
    assert actions.count("schedules.pause") == 1 and actions.count("schedules.resume") == 1


async def test_activation_switches_schedules_and_keeps_the_watermark_by_name() -> None:
    world = World("all")
    first = await world.deploy(report=MINUTELY, cleanup=Schedule("*/2 * * * *"))
    assert sorted(await world.pass_at(2 * 60 + 1)) == ["12:01:00", "12:02:00", "12:02:00"]
    world.clock.set(START + timedelta(minutes=2, seconds=30))
    second = await world.deploy(report=Schedule("* * * * *", "Europe/Paris"))
    assert sorted(world.store.schedules) == ["report"]
    assert world.store.schedules["report"].deployment_id == second != first
    assert await world.pass_at(3 * 60 + 1) == ["12:03:00"]  # not 12:01 or 12:02 again
    (run,) = [r for r in world.store.runs.values() if r.input[0]["scheduledAt"][11:16] == "12:03"]
    assert run.deployment_id == second


async def test_a_schedule_switched_away_mid_pass_starts_nothing() -> None:
    world = World()
    await world.deploy(report=MINUTELY)
    world.store.active_deployment = "dpl_elsewhere"  # what a concurrent activation leaves
    assert await world.pass_at(61) == []


async def test_trigger_now_is_idempotent_per_key_and_names_itself_manual() -> None:
    world = World()
    await world.deploy(report=MINUTELY)
    first = await world.trigger.execute("report", "k-1", "key_A", CTX)
    world.clock.set(START + timedelta(seconds=5))
    again = await world.trigger.execute("report", "k-1", "key_A", CTX)
    assert again.replayed and again.run.run_id == first.run.run_id
    assert first.run.input[0]["manual"] is True
    other = await world.trigger.execute("report", None, "key_A", CTX)
    assert other.run.run_id != first.run.run_id
    with pytest.raises(errors.ScheduleNotFound):
        await world.trigger.execute("nope", None, "key_A", CTX)
    with pytest.raises(errors.ScheduleNotFound):
        await world.pause.execute("nope", True, CTX)


async def test_next_fire_time_in_a_timezone_across_daylight_saving() -> None:
    calendar = CronsimCalendar()
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # Paris: UTC+1, then UTC+2 on 29 March
    first = calendar.next_after("0 9 * * *", "Europe/Paris", before)
    second = calendar.next_after("0 9 * * *", "Europe/Paris", first or before)
    assert first == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert second == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert calendar.latest("*/10 * * * * *", "UTC", datetime(2026, 1, 1, 0, 0, 10, 500_000,
                           tzinfo=UTC)) == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)  # fmt: skip


@pytest.mark.parametrize(
    ("cron", "zone", "words"),
    [
        ("61 * * * *", "UTC", "invalid cron"),
        ("", "UTC", "empty"),
        ("0 9 * * *", "Mars/Olympus", "unknown timezone"),
        ("0 0 30 2 *", "UTC", "invalid cron"),
        ("* " * 200, "UTC", "longer"),
        ("0 9 * * *", "../../etc/passwd", "unknown timezone"),
    ],
)
def test_the_calendar_names_what_is_wrong(cron: str, zone: str, words: str) -> None:
    problem = CronsimCalendar().problem(cron, zone)
    assert problem is not None and words in problem
    assert CronsimCalendar().problem("*/5 * * * *", "America/New_York") is None
