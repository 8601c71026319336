"""Reading a stored traceback without its message, which may echo event data."""

from __future__ import annotations

import re

__all__ = ["exception_class"]

_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def exception_class(exc_string: str | None) -> str:
    """The exception's class name from a stored traceback; never its message, which may echo data."""
    lines = [line for line in (exc_string or "").strip().splitlines() if line.strip()]
    if not lines:
        return "unknown"
    name = lines[-1].split(":", 1)[0].strip().rsplit(".", 1)[-1]
    return name if _CLASS_NAME.match(name) else "unknown"
