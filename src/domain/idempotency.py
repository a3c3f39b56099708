"""Idempotency of ``POST /v1/runs``: keys scoped per API key, payloads compared as
JSON values (key order and whitespace do not matter)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from compute_worker.domain import errors
from compute_worker.domain.world import Run

DEFAULT_RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    scope: str
    key: str
    request_hash: str
    expires_at: datetime
    status: int | None = None
    run: Run | None = None


def check_key(key: str | None) -> str:
    if key is None or key == "":
        raise errors.IdempotencyKeyRequired(
            "The Idempotency-Key header is required", {"header": "Idempotency-Key"}
        )
    if len(key) > MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 or c == " " for c in key):
        raise errors.InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters",
            {"field": "Idempotency-Key"},
        )
    return key


def request_hash(payload: Any) -> str:
    """Equal for equivalent JSON values, whatever their key order or spacing."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_bytes_hex)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _bytes_hex(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    raise TypeError(f"{type(value).__name__} is not JSON")
