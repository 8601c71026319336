"""What every source's table in the mappings file shares: the error, strict schemas, and loading one
table with a schema into lines that name the key (`hubspot.fields.labels: ...`)."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError

__all__ = ["MappingError", "StrictSchema", "load_table", "error_lines"]


class MappingError(ValueError):
    """The mappings file is unreadable or invalid; each line of the message names one key."""


class StrictSchema(Schema):
    """A table whose unknown keys are mistakes (a misspelt key would otherwise be silently unused)."""

    class Meta:
        unknown = RAISE


def load_table(schema: Schema, entry: Any, path: str, errors: list[str]) -> dict[str, Any] | None:
    """`entry` loaded by `schema`, or None with one line per mistake appended to `errors`."""
    if not isinstance(entry, dict):
        errors.append(f"{path}: must be a table")
        return None
    try:
        return dict(schema.load(entry))
    except ValidationError as err:
        errors.extend(error_lines(err.messages, path))
        return None


def error_lines(messages: Any, path: str) -> list[str]:
    """marshmallow's nested messages as `path.key: message` lines."""
    if isinstance(messages, dict):
        return [line for key, value in messages.items()
                for line in error_lines(value, path if key == "_schema" else f"{path}.{key}")]  # fmt: skip
    if isinstance(messages, list):
        return [f"{path}: {' '.join(_READABLE.get(str(m), str(m)) for m in messages)}"]
    return [f"{path}: {messages}"]


_READABLE = {"Unknown field.": "unknown key", "Missing data for required field.": "missing (required)"}
