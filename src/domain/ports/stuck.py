"""What the stuck-run detector reads and records (``domain.stuck``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from compute_worker.domain.stuck import RunProgress, StuckRun

# a position in the scan of live runs: (created at, run id)
ScanMark = tuple[datetime, str]


class StuckRunStore(Protocol):
    async def live_runs(self, after: ScanMark | None, limit: int) -> Sequence[RunProgress]:
        """Up to ``limit`` non-terminal runs after ``after``, oldest first."""
        ...

    async def save(self, stuck: Sequence[StuckRun], cleared: Sequence[str]) -> None:
        """Record ``stuck`` (replacing what was recorded for them), forget ``cleared`` and
        the records of runs that have ended since."""
        ...
