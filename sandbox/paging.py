"""Relay-style connection paging over an in-memory list, with opaque offset cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from graphql import GraphQLError

MAX_PAGE_SIZE = 100
# The platform is graphene-based; its array connections use this cursor prefix.
_CURSOR_PREFIX = "arrayconnection:"


def encode_cursor(offset: int) -> str:
    """Return the opaque cursor of the item at `offset`."""
    return base64.b64encode(f"{_CURSOR_PREFIX}{offset}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """Return the offset a cursor points at, or raise a GraphQLError for a cursor we did not issue."""
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
        if text.startswith(_CURSOR_PREFIX):
            offset = int(text[len(_CURSOR_PREFIX) :])
            if offset >= 0:
                return offset
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise GraphQLError("Invalid cursor in argument 'after'.")


def page_size(first: int | None) -> int:
    """Apply the platform's page-size rule: default and maximum of 100, negatives rejected."""
    if first is None:
        return MAX_PAGE_SIZE
    if first < 0:
        raise GraphQLError("Argument 'first' must be a non-negative integer.")
    return min(first, MAX_PAGE_SIZE)


def connection(
    items: Sequence[Any], after: str | None, first: int | None, to_node: Callable[[Any], Any]
) -> dict[str, Any]:
    """Cut one page out of `items` (already filtered and sorted) and shape it as a Connection."""
    start = decode_cursor(after) + 1 if after is not None else 0
    size = page_size(first)
    window = items[start : start + size]
    edges = [
        {"node": to_node(item), "cursor": encode_cursor(start + index)} for index, item in enumerate(window)
    ]
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "totalCount": len(items),
        "pageInfo": {
            "hasNextPage": start + len(window) < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }
