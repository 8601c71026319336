"""Removing an event's personal values from text that may echo them (API error messages)."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"


def redact(text: str, personal_values: Iterable[str]) -> str:
    """Replace every occurrence of each personal value in `text`, longest first (so parts of a
    longer value are not left behind when a shorter one is replaced first). Case is ignored, since
    the platform lower-cases some values (labels) before echoing them."""
    for value in sorted(set(personal_values), key=len, reverse=True):
        if value:
            text = re.sub(re.escape(value), REDACTED, text, flags=re.IGNORECASE)
    return text
