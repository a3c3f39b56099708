"""Per-identity request limits (fixed one-minute windows), kept in this process.

Several worker processes each apply the limit on their own; put a shared limiter
(e.g. at the proxy) in front when the limit must hold across processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from compute_worker.domain import errors

WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Quota:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
        ]


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._window = -1
        self._counts: dict[str, int] = {}

    def take(self, identity: str) -> Quota:
        """Count one request for ``identity``; ``RateLimited`` past the limit."""
        now = self._clock()
        window = int(now // WINDOW_SECONDS)
        if window != self._window:
            self._window, self._counts = window, {}
        used = self._counts.get(identity, 0) + 1
        reset = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
        if used > self.per_minute:
            raise errors.RateLimited(
                f"More than {self.per_minute} requests this minute; retry in {reset} s", reset
            )
        self._counts[identity] = used
        return Quota(self.per_minute, self.per_minute - used, reset)

    def exhausted(self, retry_after: int) -> Quota:
        return Quota(self.per_minute, 0, retry_after)
