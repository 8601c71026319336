"""Reading numbers and times from text and JSON that a sender controls, within bounds.

`str.isdigit()` is true of `"²"` and `"٣"`, which `int()` then refuses or reads as another digit, and
`int()` of 5,000 digits raises past Python's digit limit: every such check goes through `ascii_int`.
A `datetime` holds years 1 to 9999 only, so a time far in the past or future (a millisecond count of
3e14, `9999-12-31T23:59:59-14:00` once in UTC) raises OverflowError where it is converted:
`utc_isoformat` and `from_unix_milliseconds` turn that into a ValueError, which callers already handle.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["ascii_int", "from_unix_milliseconds", "utc_isoformat", "OUT_OF_RANGE"]

OUT_OF_RANGE = "not a time between years 1 and 9999 in UTC"
_ASCII_DIGITS = re.compile(r"[0-9]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ascii_int(text: str, max_digits: int) -> int | None:
    """The integer `text` spells in ASCII digits only (no sign, no space), when it has at most
    `max_digits` of them; else None."""
    if not 0 < len(text) <= max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


def from_unix_milliseconds(milliseconds: int) -> datetime:
    """The UTC time `milliseconds` after the Unix epoch; ValueError outside years 1 to 9999."""
    try:
        return _EPOCH + timedelta(milliseconds=milliseconds)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None


def utc_isoformat(moment: datetime) -> str:
    """An aware time as UTC with microseconds, the form event timestamps take; ValueError when it
    falls outside years 1 to 9999 once in UTC."""
    try:
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
