"""Listing customers a page at a time, as the `customers` query does.

Sorted by CREATED_AT (either direction), pages use key cursors and cost the page's size: a listing of
100,000 customers is 1,000 cheap pages that neither repeat nor skip a customer, even when customers
are created or deleted meanwhile. Any other order (none, NAME, DESCRIPTION, UPDATED_AT) sorts every
match on each page and uses offset cursors, like the platform: pages may then repeat or skip records
when data changes between them, which is why a full listing must sort by creation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

from sandbox.customers import CustomerBook, CustomerFilter, CustomerRecord
from sandbox.paging import connection, decode_key_cursor, encode_key_cursor, page_size, shaped_connection

Order = Mapping[str, str] | None


def customers_page(
    book: CustomerBook,
    wanted: CustomerFilter,
    sort_by: Sequence[Order] | None,
    after: str | None,
    first: int | None,
) -> dict[str, Any]:
    """Return one page of the customers matching `wanted`, shaped as a CustomerConnection."""
    orders = [order for order in sort_by or [] if order is not None]
    size = page_size(first)
    if orders and orders[0]["field"] == "CREATED_AT":
        # The creation tick is unique, so any further sort keys cannot change this order.
        return _in_creation_order(book, wanted, orders[0]["direction"] == "DESC", after, size)
    return connection(book.search(wanted, orders), after, size, to_node=CustomerRecord.to_node)


def _in_creation_order(
    book: CustomerBook, wanted: CustomerFilter, descending: bool, after: str | None, size: int
) -> dict[str, Any]:
    """One page in creation order, starting after the creation tick in the `after` cursor."""
    after_tick = decode_key_cursor(after) if after is not None else None
    candidates = book.indexed_candidates(wanted)
    if candidates is not None:
        matches = [c for c in candidates if wanted.matches(c)]
        total = len(matches)
        following = (c for c in matches if after_tick is None or _follows(c.created, after_tick, descending))
    else:
        following = (c for c in book.in_creation_order(after_tick, descending) if wanted.matches(c))
        if wanted.filters_only_on_is_system():
            total = book.count(wanted.is_system)
        else:
            total = len(book.matching(wanted))
    window = list(islice(following, size + 1))
    edges = [{"node": c.to_node(), "cursor": encode_key_cursor(c.created)} for c in window[:size]]
    return shaped_connection(edges, total, len(window) > size, after is not None)


def _follows(created: int, after: int, descending: bool) -> bool:
    """Tell whether a record created at tick `created` comes after the cursor's tick `after`."""
    return created < after if descending else created > after
