"""The JSON codec shared by the wire and the payload columns."""

from __future__ import annotations

import pytest

from compute_worker.adapters import codec


def test_bytes_round_trip_at_any_depth() -> None:
    value = {"a": [b"\x00\xff", {"b": bytes(range(256))}], "c": "text"}
    assert codec.loads(codec.dumps(value)) == value


def test_an_envelope_with_bad_base64_is_refused() -> None:
    with pytest.raises(ValueError, match="base64"):
        codec.loads(b'{"__type": "Uint8Array", "data": "not base64!"}')


@pytest.mark.parametrize("depth", [codec.MAX_DEPTH + 1, 1000])
def test_nesting_deeper_than_storable_is_refused_as_bad_input(depth: int) -> None:
    with pytest.raises(ValueError, match="nested deeper"):
        codec.loads("[" * depth + "]" * depth)


def test_the_deepest_accepted_value_can_be_stored_inside_an_event() -> None:
    deepest = codec.loads("[" * codec.MAX_DEPTH + "]" * codec.MAX_DEPTH)
    stored = {"eventData": {"input": [deepest]}}
    assert codec.loads(codec.dumps(stored), codec.STORED_MAX_DEPTH) == stored
