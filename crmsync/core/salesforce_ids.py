"""Salesforce record ids in one form: the 18-character, case-safe one.

A Salesforce id has a case-sensitive 15-character form and an 18-character form that appends a
checksum of the letters' case, three characters from `A`-`Z`, `0`-`5` (Salesforce's documented
algorithm, the one its `CASESAFEID()` formula uses): for each block of five characters, bit i is set
when character i is an upper-case letter. Both forms reach crmsync (reports, formulas and older
integrations give 15), so every layer that takes a Salesforce id turns it into the 18-character form
here; an 18-character id whose case was lost (a spreadsheet, a case-insensitive store) gets its case
back from the suffix.
"""

from __future__ import annotations

import re

__all__ = ["salesforce_id_18", "is_salesforce_id"]

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_15 = re.compile(r"[A-Za-z0-9]{15}")
_ID_18 = re.compile(r"[A-Za-z0-9]{15}[A-Za-z0-5]{3}")


def is_salesforce_id(value: str) -> bool:
    """True when `value` has the shape of a Salesforce id (15 characters, or 18 with a case suffix)."""
    return bool(_ID_15.fullmatch(value) or _ID_18.fullmatch(value))


def salesforce_id_18(value: str) -> str:
    """The 18-character form of a Salesforce id given in either form; any other value unchanged.

    Idempotent; the case of a 15-character id is significant (two ids differing only in case are two
    records), while an 18-character id is read case-insensitively, its suffix restoring the case.
    """
    if _ID_15.fullmatch(value):
        return value + _suffix(value)
    if _ID_18.fullmatch(value):
        return _with_case(value[:15], value[15:].upper()) + value[15:].upper()
    return value


def _suffix(id_15: str) -> str:
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, char in enumerate(id_15[start : start + 5]) if "A" <= char <= "Z")
        suffix += _SUFFIX_ALPHABET[bits]
    return suffix


def _with_case(id_15: str, suffix: str) -> str:
    """The 15 characters with each letter's case as the suffix records it."""
    chars = []
    for block, code in enumerate(suffix):
        bits = _SUFFIX_ALPHABET.index(code)
        for i, char in enumerate(id_15[block * 5 : block * 5 + 5]):
            chars.append(char.upper() if bits & (1 << i) else char.lower())
    return "".join(chars)
