"""Relay-style connection paging: opaque offset cursors over a list, or key cursors over creation order.

Offset cursors (graphene's `arrayconnection:N`) are what the platform issues: if records are added
or deleted between two pages in the order being paged, a page repeats or skips records. Key cursors
point at the creation tick of the last record seen, so paging in creation order neither repeats nor
skips, whatever changes in between.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from graphql import GraphQLError

MAX_PAGE_SIZE = 100
# The platform is graphene-based; its array connections use this cursor prefix.
_CURSOR_PREFIX = "arrayconnection:"
_KEY_CURSOR_PREFIX = "created:"


def encode_cursor(offset: int) -> str:
    """Return the opaque cursor of the item at `offset`."""
    return base64.b64encode(f"{_CURSOR_PREFIX}{offset}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """Return the offset a cursor points at, or raise a GraphQLError for a cursor we did not issue."""
    return _decode(cursor, _CURSOR_PREFIX)


def encode_key_cursor(created: int) -> str:
    """Return the opaque cursor of the record with creation tick `created`."""
    return base64.b64encode(f"{_KEY_CURSOR_PREFIX}{created}".encode()).decode()


def decode_key_cursor(cursor: str) -> int:
    """Return the creation tick a key cursor points at, or raise a GraphQLError."""
    return _decode(cursor, _KEY_CURSOR_PREFIX)


def _decode(cursor: str, prefix: str) -> int:
    """Return the number after `prefix` in a base64 cursor, or raise a GraphQLError for a cursor of
    another kind or one we did not issue."""
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
        if text.startswith(prefix):
            number = int(text[len(prefix) :])
            if number >= 0:
                return number
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
    return shaped_connection(edges, len(items), start + len(window) < len(items), start > 0)


def shaped_connection(
    edges: list[dict[str, Any]], total: int, has_next: bool, has_previous: bool
) -> dict[str, Any]:
    """Shape one page's edges `[{node, cursor}]` as the schema's Connection type."""
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "totalCount": total,
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }
