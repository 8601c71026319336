"""Removing an event's personal values from text that may echo them (API error messages)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

REDACTED = "[redacted]"


def redact(text: str, personal_values: Iterable[str]) -> str:
    """Replace every occurrence of each personal value in `text`, longest first (so parts of a
    longer value are not left behind when a shorter one is replaced first). Case is ignored, since
    the platform lower-cases some values (labels) before echoing them; JSON- and repr-escaped forms
    are replaced too, since a GraphQL error echoing an input prints it as JSON or as a literal."""
    forms = {form for value in personal_values if value for form in _echoed_forms(value)}
    for form in sorted(forms, key=len, reverse=True):
        text = re.sub(re.escape(form), REDACTED, text, flags=re.IGNORECASE)
    return text


def _echoed_forms(value: str) -> set[str]:
    json_forms = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return {value, *json_forms, repr(value)[1:-1], value.replace("'", "\\'")}
