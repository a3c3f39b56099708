"""PostgreSQL: the writes a unit deferred (``SqlTransaction.flush``) in one statement.

A durable step's unit updates its run, inserts the next step, updates the finished
one and appends three events: four round trips to the server as separate statements,
one as data-modifying CTEs (``WITH … AS (UPDATE …), … SELECT``). PostgreSQL runs
every sub-statement of a ``WITH`` exactly once, on one snapshot, whether or not the
final ``SELECT`` reads it; that is safe here because the rows a flush writes are
distinct (a step is either new or updated in one unit, never both) and the rows they
reference (the run) exist before it. The final ``SELECT`` counts each new step's
``RETURNING`` row: 0 means another writer took its key (``ON CONFLICT DO NOTHING``).

Statements are built once per shape (how many rows of each kind, which columns) and
cached; a shape past the limits below is written statement by statement instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, func, literal, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.selectable import CTE

from compute_worker.adapters.sql.schema import events, runs, steps

MAX_EVENTS = 64  # 8 columns each: far below PostgreSQL's 32,767 parameters
MAX_STEPS = 8
MAX_RUNS = 4  # a run and its parent, say; a cascade over many runs goes row by row


@dataclass(frozen=True, slots=True)
class FlushShape:
    """What one flush writes, without the values: the key of its cached statement."""

    run_keys: tuple[tuple[str, ...], ...]  # the columns of each run updated
    new_step_keys: tuple[tuple[str, ...], ...]
    dirty_step_keys: tuple[tuple[str, ...], ...]
    event_keys: tuple[str, ...] | None  # None: no event
    events: int

    @property
    def fits(self) -> bool:
        steps_written = len(self.new_step_keys) + len(self.dirty_step_keys)
        return (self.events <= MAX_EVENTS and steps_written <= MAX_STEPS
                and len(self.run_keys) <= MAX_RUNS)  # fmt: skip

    @property
    def statements(self) -> int:
        """How many statements the flush would cost one by one."""
        steps_written = len(self.new_step_keys) + len(self.dirty_step_keys)
        return len(self.run_keys) + steps_written + (1 if self.events else 0)


def flush_params(
    dirty_runs: list[dict[str, Any]],
    new_steps: list[dict[str, Any]],
    dirty_steps: list[dict[str, Any]],
    new_events: list[dict[str, Any]],
) -> dict[str, Any]:
    """The parameters of ``flush_statement`` for these rows (the ``b_`` keys of an
    update's row name the row it updates)."""
    params: dict[str, Any] = {}
    for prefix, group in (("r", dirty_runs), ("n", new_steps), ("u", dirty_steps),
                          ("e", new_events)):  # fmt: skip
        for index, row in enumerate(group):
            for key, value in row.items():
                params[f"{prefix}{index}_{key}"] = value
    return params


def _bound(prefix: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Each column of ``keys`` bound to ``<prefix>_<column>``; the ``b_`` keys (which
    row an update changes) left out."""
    return {k: bindparam(f"{prefix}_{k}") for k in keys if not k.startswith("b_")}


@cache
def flush_statement(shape: FlushShape) -> Select[Any]:
    ctes: list[CTE] = []
    for index, keys in enumerate(shape.run_keys):
        run_update = update(runs).where(runs.c.run_id == bindparam(f"r{index}_b_run_id"))
        ctes.append(run_update.values(_bound(f"r{index}", keys)).cte(f"run_{index}"))
    for index, keys in enumerate(shape.dirty_step_keys):
        step_update = update(steps).where(
            steps.c.run_id == bindparam(f"u{index}_b_run_id"),
            steps.c.step_id == bindparam(f"u{index}_b_step_id"),
        )
        ctes.append(step_update.values(_bound(f"u{index}", keys)).cte(f"step_update_{index}"))
    if shape.event_keys is not None:
        rows = [_bound(f"e{index}", shape.event_keys) for index in range(shape.events)]
        ctes.append(postgresql.insert(events).values(rows).cte("new_events"))
    counts = []
    for index, keys in enumerate(shape.new_step_keys):
        inserted = (
            postgresql.insert(steps)
            .values(_bound(f"n{index}", keys))
            .on_conflict_do_nothing()
            .returning(steps.c.step_id)
            .cte(f"new_step_{index}")
        )
        counts.append(select(func.count()).select_from(inserted).scalar_subquery()
                      .label(f"new_step_{index}"))  # fmt: skip
    query = select(*counts) if counts else select(literal(1).label("written"))
    return query.add_cte(*ctes) if ctes else query
