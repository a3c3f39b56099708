"""The two strings every answer carries: a moment on the wire and a generated
correlation id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from compute_worker.adapters.http.middleware import new_correlation_id
from compute_worker.adapters.world_wire import iso


def test_a_moment_is_utc_with_milliseconds_and_a_z() -> None:
    assert iso(datetime(2026, 12, 4, 18, 0, 0, 123999, tzinfo=UTC)) == "2026-12-04T18:00:00.123Z"
    assert iso(datetime(2026, 12, 4, 18, 0, 0, tzinfo=UTC)) == "2026-12-04T18:00:00.000Z"
    plus_one = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 12, 5, 0, 30, 0, 5000, tzinfo=plus_one)) == "2026-12-04T23:30:00.005Z"


def test_generated_correlation_ids_are_distinct_uuid4s() -> None:
    generated = [new_correlation_id() for _ in range(20_000)]
    assert len(set(generated)) == len(generated)
    for value in generated[:2_000]:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, value)
