"""JSON with byte strings: ``bytes`` travel as ``{"__type": "Uint8Array", "data": <base64>}``
at any depth (world.md D3). Used on the wire and for payload columns alike."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

_TAG = "Uint8Array"
# Nesting accepted from clients: below orjson.dumps's own limit (255), so whatever is
# read can be stored with a little wrapping; stored documents are read back deeper.
MAX_DEPTH = 200
STORED_MAX_DEPTH = 260


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__type": _TAG, "data": base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def dumps_text(value: Any) -> str:
    return dumps(value).decode()


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON and turn every Uint8Array envelope back into ``bytes``.

    Raises ``ValueError`` for invalid JSON, a malformed envelope, or nesting too
    deep to walk (orjson accepts 1,024 levels, more than Python's recursion limit).
    """
    parsed = orjson.loads(raw)
    try:
        return revive(parsed, max_depth)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None


def revive(value: Any, levels_left: int = STORED_MAX_DEPTH) -> Any:
    if levels_left <= 0:
        raise RecursionError
    if isinstance(value, dict):
        if value.get("__type") == _TAG and isinstance(value.get("data"), str) and len(value) == 2:
            try:
                return base64.b64decode(value["data"], validate=True)
            except binascii.Error as exc:
                raise ValueError("a Uint8Array envelope holds invalid base64") from exc
        return {key: revive(item, levels_left - 1) for key, item in value.items()}
    if isinstance(value, list):
        return [revive(item, levels_left - 1) for item in value]
    return value
