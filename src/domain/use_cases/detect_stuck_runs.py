"""DetectStuckRuns: one bounded pass of the stuck-run detector (``domain.stuck``).

Each ``tick`` reads at most ``batch`` live runs, continuing where the last one stopped and
starting over once it reached the newest, so a worker with many live runs spreads the
work over several ticks. It records what it found and returns the runs that became stuck
(or stuck for another reason) in this tick, for the caller to log.
"""

from __future__ import annotations

from datetime import timedelta

from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.stuck import ScanMark, StuckRunStore
from compute_worker.domain.stuck import StuckRun, diagnose


class DetectStuckRuns:
    def __init__(
        self, store: StuckRunStore, clock: Clock, threshold: timedelta, batch: int = 200
    ) -> None:
        self._store = store
        self._clock = clock
        self.threshold = threshold
        self._batch = batch
        self._after: ScanMark | None = None

    async def tick(self) -> list[StuckRun]:
        runs = await self._store.live_runs(self._after, self._batch)
        now = self._clock.now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored: to the ms
        stuck: list[StuckRun] = []
        cleared: list[str] = []
        newly: list[StuckRun] = []
        for run in runs:
            found = diagnose(run, now, self.threshold)
            if found is None:
                if run.recorded is not None:
                    cleared.append(run.run_id)
                continue
            if found != run.recorded:
                stuck.append(found)
            if run.recorded is None or run.recorded.reason != found.reason:
                newly.append(found)
        full = len(runs) >= self._batch
        self._after = (runs[-1].created_at, runs[-1].run_id) if full else None
        if stuck or cleared or not full:  # a finished pass also forgets runs that ended
            await self._store.save(stuck, cleared)
        return newly
