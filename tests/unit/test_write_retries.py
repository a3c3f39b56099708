"""The group-commit writer runs a unit PostgreSQL aborted for a deadlock again, a bounded
number of times, then says ``storage_unavailable`` (and health turns degraded); driver
errors by SQLSTATE: a server restarting or out of room is ``storage_unavailable``, never an
internal error."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from compute_worker.adapters.sql.errors import WriteConflict, translate
from compute_worker.adapters.sql.writer import CONFLICT_ATTEMPTS, GroupCommitWriter
from compute_worker.domain import errors


class CollidingCommitter:
    """Fails the first ``collisions`` units it is handed as deadlock victims."""

    observer = None

    def __init__(self, collisions: int) -> None:
        self.collisions = collisions
        self.handed = 0

    def submit(self, unit) -> None:  # type: ignore[no-untyped-def]
        self.handed += 1
        if self.handed <= self.collisions:
            unit.future.set_exception(WriteConflict("deadlock"))
        else:
            unit.future.set_result(unit.work(None))

    async def close(self) -> None:
        return None


async def test_a_unit_that_collided_runs_again_until_it_lands() -> None:
    committer = CollidingCommitter(CONFLICT_ATTEMPTS - 1)
    writer = GroupCommitWriter(committer)
    assert await writer.run(lambda tx: "written") == "written"
    assert committer.handed == CONFLICT_ATTEMPTS
    writer.raise_if_failing()  # healthy: the write landed


async def test_a_unit_that_keeps_colliding_fails_as_storage_unavailable() -> None:
    committer = CollidingCommitter(CONFLICT_ATTEMPTS)
    writer = GroupCommitWriter(committer)
    with pytest.raises(errors.StorageUnavailable):
        await writer.run(lambda tx: "never")
    assert committer.handed == CONFLICT_ATTEMPTS  # bounded: no fifth try
    with pytest.raises(errors.StorageUnavailable):
        writer.raise_if_failing()


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "meaning"),
    [
        ("57P03", errors.StorageUnavailable),  # the database system is starting up
        ("57P01", errors.StorageUnavailable),  # terminating connection: administrator command
        ("08006", errors.StorageUnavailable),  # connection failure
        ("53100", errors.StorageUnavailable),  # disk full
        ("40P01", WriteConflict),  # deadlock detected: run again
        ("40001", WriteConflict),  # serialization failure: run again
        ("22001", errors.InvalidRequest),  # a value too long for its column
    ],
)
def test_driver_errors_mean_what_a_caller_can_act_on(sqlstate: str, meaning: type) -> None:
    wrapped = sa_exc.DBAPIError("SELECT 1", {}, DriverError(sqlstate))
    assert type(translate(wrapped)) is meaning
