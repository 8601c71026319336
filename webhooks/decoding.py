"""Decoding a webhook body: JSON text in UTF-8, as RFC 8259 defines it for systems that exchange it.

`json.loads(bytes)` would also guess UTF-16 and UTF-32 and skip a byte order mark; the contract is
UTF-8 without one, so anything else is refused rather than guessed at. Every way a body can fail to
be such JSON (bad bytes, bad syntax, `NaN`, integers beyond Python's 4,300 digits, nesting deep
enough to exhaust the parser's recursion, strings holding a lone surrogate that UTF-8 cannot encode)
is one `MalformedJSON` with a message saying which.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

__all__ = ["MalformedJSON", "decode_json"]

_SURROGATE = re.compile("[\ud800-\udfff]")
# UTF-8 text cannot hold a surrogate: only a `\ud800`-`\udfff` escape can put one in a parsed string.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class MalformedJSON(ValueError):
    """The body is not JSON text in UTF-8; the message says why."""


def decode_json(body: bytes) -> Any:
    """The JSON value of a UTF-8 body; raise MalformedJSON otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJSON("The body is not UTF-8 (UTF-16 and UTF-32 are not accepted).") from None
    if text.startswith("\ufeff"):
        raise MalformedJSON("The body starts with a byte order mark; UTF-8 JSON must not.")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise MalformedJSON("The body is nested too deeply.") from None
    except _NotJSONConstant:
        raise MalformedJSON("The body is not valid JSON: NaN and Infinity are not JSON numbers.") from None
    except json.JSONDecodeError:
        raise MalformedJSON("The body is not valid JSON.") from None
    except ValueError:  # int() past its digit limit (sys.get_int_max_str_digits)
        raise MalformedJSON(
            f"The body is not valid JSON: an integer has more than {sys.get_int_max_str_digits():,} digits."
        ) from None
    # Walking every string of a 100-event batch costs ~1 ms: only when an escape could have made one.
    if _ESCAPED_SURROGATE.search(text) and _holds_lone_surrogate(value):
        raise MalformedJSON("A string in the body holds a lone UTF-16 surrogate (\\ud800-\\udfff).")
    return value


class _NotJSONConstant(ValueError):
    """`NaN`, `Infinity` or `-Infinity`, which Python's parser accepts and JSON does not."""


def _refuse_constant(name: str) -> Any:
    raise _NotJSONConstant(name)


# What `json.loads(text, parse_constant=...)` builds for every call, built once.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _holds_lone_surrogate(value: Any) -> bool:
    # Without recursion: the parser already accepted whatever depth the body has.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
