"""Prefixed monotonic ULIDs (world.md §1 conventions, §2.6 event id ordering)."""

from __future__ import annotations

import random
import threading
from itertools import pairwise

import pytest

from compute_worker.domain import ids

MAX_TIME = (1 << 48) - 1
MAX_RANDOM = (1 << 80) - 1
FROZEN_MS = 1_736_942_400_000  # 2025-01-15T12:00:00Z


def frozen_clock() -> int:
    return FROZEN_MS


# -- encode / decode ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp_ms", "randomness", "text"),
    [
        (0, 0, "0" * 26),
        (0, 1, "0" * 25 + "1"),
        (0, 31, "0" * 25 + "Z"),
        (MAX_TIME, MAX_RANDOM, "7" + "Z" * 25),
        (1, 0, "0" * 9 + "1" + "0" * 16),  # 10 time characters, then 16 random ones
    ],
)
def test_known_encodings(timestamp_ms: int, randomness: int, text: str) -> None:
    assert ids.encode_ulid(timestamp_ms, randomness) == text
    assert ids.decode_ulid(text) == (timestamp_ms, randomness)


def test_round_trip_of_random_values() -> None:
    rng = random.Random(1234)
    for _ in range(1000):
        timestamp_ms, randomness = rng.randrange(MAX_TIME + 1), rng.randrange(MAX_RANDOM + 1)
        text = ids.encode_ulid(timestamp_ms, randomness)
        assert len(text) == ids.ULID_LENGTH
        assert set(text) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        assert ids.decode_ulid(text) == (timestamp_ms, randomness)
        assert ids.decode_ulid(text.lower()) == (timestamp_ms, randomness)


def test_string_order_is_value_order() -> None:
    rng = random.Random(99)
    values = [(rng.randrange(1 << 44), rng.randrange(MAX_RANDOM + 1)) for _ in range(500)]
    texts = [ids.encode_ulid(t, r) for t, r in values]
    assert sorted(texts) == [ids.encode_ulid(t, r) for t, r in sorted(values)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0" * 25,
        "0" * 27,
        "0" * 25 + "I",
        "0" * 25 + "L",
        "0" * 25 + "O",
        "0" * 25 + "U",
        "0" * 25 + "-",
        "0" * 25 + " ",
        "0" * 25 + "é",
        "8" + "0" * 25,
        "Z" * 26,
    ],
)
def test_invalid_ulids_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        ids.decode_ulid(text)


def test_ulid_timestamp_of_a_prefixed_id() -> None:
    run_id = ids.RUN + ids.encode_ulid(FROZEN_MS, 42)
    assert ids.ulid_timestamp_ms(run_id, ids.RUN) == FROZEN_MS


@pytest.mark.parametrize(
    "prefixed",
    [
        ids.STEP + ids.encode_ulid(FROZEN_MS, 1),
        ids.encode_ulid(FROZEN_MS, 1),
        ids.RUN + ids.encode_ulid(FROZEN_MS, 1)[:-1],
        ids.RUN,
    ],
)
def test_ulid_timestamp_rejects_malformed_ids(prefixed: str) -> None:
    with pytest.raises(ValueError):
        ids.ulid_timestamp_ms(prefixed, ids.RUN)


# -- IdFactory ----------------------------------------------------------------------------


def test_ten_thousand_ids_in_one_millisecond_are_strictly_increasing() -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    made = [factory.ulid() for _ in range(10_000)]

    assert all(earlier < later for earlier, later in pairwise(made))
    assert len(set(made)) == len(made)
    decoded = [ids.decode_ulid(text) for text in made]
    assert {timestamp for timestamp, _ in decoded} == {FROZEN_MS}
    randoms = [randomness for _, randomness in decoded]
    assert randoms == list(range(randoms[0], randoms[0] + 10_000))


def test_prefixed_ids_are_strictly_increasing() -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    made = [factory.new(ids.EVENT) for _ in range(1000)]
    assert all(text.startswith(ids.EVENT) for text in made)
    assert all(len(text) == len(ids.EVENT) + ids.ULID_LENGTH for text in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_a_new_millisecond_starts_with_that_timestamp() -> None:
    now = [FROZEN_MS]
    factory = ids.IdFactory(clock_ms=lambda: now[0])
    first = factory.ulid()
    now[0] += 5
    second = factory.ulid()
    assert ids.decode_ulid(first)[0] == FROZEN_MS
    assert ids.decode_ulid(second)[0] == FROZEN_MS + 5
    assert first < second


def test_ids_keep_increasing_when_the_clock_goes_back() -> None:
    now = [FROZEN_MS]
    factory = ids.IdFactory(clock_ms=lambda: now[0])
    first = factory.ulid()
    now[0] -= 60_000
    later = [factory.ulid() for _ in range(100)]
    assert all(first < text for text in later)
    assert later == sorted(later)


def test_default_clock_is_used_when_none_is_given() -> None:
    made = ids.IdFactory().ulid()
    assert ids.decode_ulid(made)[0] > FROZEN_MS


@pytest.mark.parametrize("floor_offset_ms", [0, 1, 10_000, -10_000])
def test_floor_makes_ids_greater_than_the_floor(floor_offset_ms: int) -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    floor = ids.encode_ulid(FROZEN_MS + floor_offset_ms, MAX_RANDOM // 2)
    made = factory.ulid(floor)
    assert made > floor
    assert factory.ulid() > made


def test_floor_with_maximal_randomness_rolls_into_the_next_millisecond() -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    floor = ids.encode_ulid(FROZEN_MS, MAX_RANDOM)
    assert factory.ulid(floor) == ids.encode_ulid(FROZEN_MS + 1, 0)


def test_floor_far_ahead_of_the_clock() -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    floor = ids.encode_ulid(FROZEN_MS + 3_600_000, 17)
    assert factory.ulid(floor) == ids.encode_ulid(FROZEN_MS + 3_600_000, 18)


def test_a_lower_floor_does_not_move_ids_back() -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    latest = [factory.ulid() for _ in range(10)][-1]
    made = factory.ulid(ids.encode_ulid(FROZEN_MS - 1, 0))
    assert made > latest


def test_new_strips_the_prefix_from_the_floor() -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    floor = ids.EVENT + ids.encode_ulid(FROZEN_MS + 50, 123)
    made = factory.new(ids.EVENT, floor=floor)
    assert made == ids.EVENT + ids.encode_ulid(FROZEN_MS + 50, 124)


def test_invalid_floor_is_rejected() -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    with pytest.raises(ValueError):
        factory.ulid("not-a-ulid")


def test_ids_are_unique_across_threads() -> None:
    factory = ids.IdFactory(clock_ms=frozen_clock)
    results: list[list[str]] = [[] for _ in range(8)]

    def work(bucket: list[str]) -> None:
        bucket.extend(factory.ulid() for _ in range(1000))

    threads = [threading.Thread(target=work, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [text for bucket in results for text in bucket]
    assert len(set(every)) == len(every)
    for bucket in results:
        assert bucket == sorted(bucket)
