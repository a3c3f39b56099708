"""Prefixed, time-sortable identifiers (ULID, Crockford base32).

Ids created by one :class:`IdFactory` are strictly increasing, even within one
millisecond (monotonic ULID), so lexicographic order equals creation order.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_PYTHON_BASE32 = str.maketrans(_ALPHABET, "0123456789abcdefghijklmnopqrstuv")
_ULID_PATTERN = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")
_RANDOM_BITS = 80
_MAX_RANDOM = (1 << _RANDOM_BITS) - 1
ULID_LENGTH = 26

RUN = "wrun_"
EVENT = "evnt_"
STEP = "step_"
HOOK = "hook_"
WAIT = "wait_"
MESSAGE = "msg_"
CHUNK = "chnk_"
STREAM = "strm_"
DEPLOYMENT = "dpl_"
KEY = "key_"


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits → 2 characters


def encode_ulid(timestamp_ms: int, randomness: int) -> str:
    value = (timestamp_ms << _RANDOM_BITS) | randomness
    pairs = _PAIRS
    middle = "".join(pairs[(value >> shift) & 1023] for shift in range(115, 4, -10))
    return _ALPHABET[(value >> 125) & 31] + middle + _ALPHABET[value & 31]


def decode_ulid(text: str) -> tuple[int, int]:
    """Return ``(timestamp_ms, randomness)``; raise ``ValueError`` when not a ULID."""
    if not _ULID_PATTERN.fullmatch(text):
        raise ValueError("a ULID has 26 Crockford base32 characters")
    value = int(text.upper().translate(_TO_PYTHON_BASE32), 32)
    if value >> 128:
        raise ValueError("ULID overflows 128 bits")
    return value >> _RANDOM_BITS, value & _MAX_RANDOM


def ulid_timestamp_ms(prefixed_id: str, prefix: str) -> int:
    """Embedded time of ``<prefix><ULID>``; ``ValueError`` when malformed."""
    if not prefixed_id.startswith(prefix):
        raise ValueError(f"expected the prefix {prefix!r}")
    return decode_ulid(prefixed_id[len(prefix) :])[0]


def ulid_datetime(prefixed_id: str) -> datetime:
    """The creation time embedded in ``<prefix>_<ULID>``."""
    bare = prefixed_id.rsplit("_", 1)[-1]
    return datetime.fromtimestamp(decode_ulid(bare)[0] / 1000, UTC)


class IdFactory:
    """Monotonic ULID source; thread-safe, one per process is enough."""

    def __init__(self, clock_ms: object = None) -> None:
        self._clock_ms = clock_ms if callable(clock_ms) else _now_ms
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def ulid(self, floor: str | None = None) -> str:
        """A new ULID, greater than every earlier one and than ``floor`` (a bare ULID)."""
        with self._lock:
            now: int = self._clock_ms()
            last_ms, last_random = self._last_ms, self._last_random
            if floor is not None:
                floor_ms, floor_random = decode_ulid(floor)
                if (floor_ms, floor_random) > (last_ms, last_random):
                    last_ms, last_random = floor_ms, floor_random
            if now > last_ms:
                self._last_ms = now
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
            elif last_random < _MAX_RANDOM:
                self._last_ms, self._last_random = last_ms, last_random + 1
            else:
                self._last_ms, self._last_random = last_ms + 1, 0
            return encode_ulid(self._last_ms, self._last_random)

    def new(self, prefix: str, floor: str | None = None) -> str:
        bare_floor = floor[len(prefix) :] if floor is not None else None
        return prefix + self.ulid(bare_floor)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
