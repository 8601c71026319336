"""Personal values are removed from API error messages, however the API echoes them."""

from __future__ import annotations

import pytest

from crmsync.core.redaction import REDACTED, redact


@pytest.mark.parametrize(
    ("message", "values"),
    [
        ("Customer with name Zaphod Beeblebrox already exists", ["Zaphod Beeblebrox"]),
        ("label 'galaxy-president' is invalid", ["Galaxy-President"]),  # the platform lower-cases labels
        ('Variable "$input" got invalid value {"name": "Zo\\u00eb \\"Z\\" Q"}', ['Zoë "Z" Q']),
        ('invalid value {"description": "line one\\nline two"}', ["line one\nline two"]),
        ("got 'O\\'Brien & Sons'", ["O'Brien & Sons"]),
    ],
    ids=["verbatim", "other-case", "json-escaped", "json-newline", "repr-escaped"],
)
def test_an_echoed_personal_value_is_redacted(message: str, values: list[str]) -> None:
    redacted = redact(message, values)
    assert REDACTED in redacted
    for value in values:
        assert value.lower() not in redacted.lower()
    assert "Zo" not in redacted and "Brien" not in redacted and "line one" not in redacted


def test_a_longer_value_is_redacted_whole_before_a_shorter_one_inside_it() -> None:
    assert redact("name Mars Missions Corp taken", ["Mars", "Mars Missions Corp"]) == f"name {REDACTED} taken"


def test_text_without_personal_values_is_unchanged() -> None:
    assert redact("personal-data API failed with HTTP 503", ["Zaphod", ""]) == (
        "personal-data API failed with HTTP 503"
    )
