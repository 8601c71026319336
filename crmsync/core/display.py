"""Text a sender controls, made safe to show an operator: on a terminal (the CLI) or in a page.

An id or a type name from a CRM may hold ESC, BEL, CR or NUL: printed as they are, they move the
cursor, retitle the terminal window or hide the rest of a line. `printable` writes each control
character as a visible escape (`\\x1b`, `\\r`, ...); every CLI and dashboard rendering of such text
goes through it.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 controls, DEL, C1 controls, and the bidirectional overrides that reorder what a line shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value: object) -> str:
    """`value` as text with every control character escaped; other text is left as it is."""
    text = value if isinstance(value, str) else str(value)
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) <= 0xFF else f"\\u{ord(char):04x}")
