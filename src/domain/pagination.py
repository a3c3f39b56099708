"""Pagination of World lists (world.md §3.1, decision D7).

Order is ``(createdAt, id)``; a cursor names the last item of a page, opaquely.
The last page keeps its cursor so a poller can resume from it later.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from compute_worker.domain import errors

T = TypeVar("T")
SortOrder = Literal["asc", "desc"]
MAX_LIMIT = 1000
MAX_STORED_INT = 2**63  # timestamps are BIGINT columns
MAX_CURSOR_ID = 255  # longer than any stored id


@dataclass(frozen=True, slots=True)
class Position:
    """Where a cursor points: the sort key of the last item seen."""

    created_ms: int
    item_id: str


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    sort_order: SortOrder
    after: Position | None = None

    @classmethod
    def of(
        cls,
        limit: int | None,
        cursor: str | None,
        sort_order: str | None,
        *,
        default_limit: int,
        default_order: SortOrder,
        field_prefix: str = "pagination.",
    ) -> PageRequest:
        """``field_prefix`` names the fields in errors (the public lane's query parameters
        have none). ``sort_order`` None is the default order; ``""`` is refused like any
        other word, an empty ``cursor`` like any other it did not issue (a query
        parameter sent empty is None by then)."""
        order: SortOrder = default_order
        if sort_order == "asc":
            order = "asc"
        elif sort_order == "desc":
            order = "desc"
        elif sort_order is not None:
            raise errors.InvalidRequest(
                "sortOrder must be 'asc' or 'desc'", {"field": f"{field_prefix}sortOrder"}
            )
        size = default_limit if limit is None else min(max(limit, 1), MAX_LIMIT)
        after = None if cursor is None else decode_cursor(cursor, f"{field_prefix}cursor")
        return cls(limit=size, sort_order=order, after=after)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    data: tuple[T, ...]
    cursor: str | None
    has_more: bool


def encode_cursor(position: Position) -> str:
    raw = f"{position.created_ms}|{position.item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, field: str = "pagination.cursor") -> Position:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, item_id = base64.urlsafe_b64decode(padded).decode().split("|", 1)
        position = Position(int(created), item_id)
        if not 0 <= position.created_ms < MAX_STORED_INT:
            raise ValueError("out of range")
        if len(item_id) > MAX_CURSOR_ID or "\x00" in item_id:
            raise ValueError("not an id")
        return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.InvalidRequest(
            "cursor is not one this server issued", {"field": field}
        ) from None
