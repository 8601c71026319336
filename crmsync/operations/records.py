"""From an export's raw records to customer records: the source's mapping, applied one record at a time.

A `CustomerRecord` holds what the platform should have for one external id: the customer fields the
record carries (normalised as the platform stores them) and the record's version (its CRM time), if
the mapping names a version field. A record that cannot be mapped becomes a `Skipped` with its line
and a reason that names fields, never their values (exports hold personal data).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from crmsync.core.events import CUSTOMER_FIELDS, normalize_labels
from crmsync.core.external_ids import external_id_problem
from crmsync.core.parsing import utc_isoformat

from .exports import ExportError, ExportLine

__all__ = [
    "CustomerRecord",
    "Skipped",
    "SkippedLog",
    "RecordSkipped",
    "ExportMapping",
    "StandardMapping",
    "map_records",
    "field_digests",
    "parse_time",
    "LABEL_SEPARATOR",
    "check_columns",
]

LABEL_SEPARATOR = ";"
DIGEST_BYTES = 8
# How many unknown keys of a record its skip reason names, and how much of each.
MAX_KEYS_NAMED = 5
MAX_KEY_CHARS = 64
# How far ahead of this clock a version may be: other machines' clocks drift.
CLOCK_SKEW = timedelta(minutes=5)


class RecordSkipped(ValueError):
    """A record cannot become a customer record; the message names the field, never its value."""

    def __init__(self, reason: str, external_id: str = "") -> None:
        super().__init__(reason)
        self.external_id = external_id


@dataclass(frozen=True)
class CustomerRecord:
    """What the export says one customer should be: only the fields its record carries."""

    line: int
    external_id: str
    fields: dict[str, Any]
    version: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A record or line left out, and why. `external_id` is set when the record had a usable one;
    `unreadable` marks lines that could not be read at all (so which customer they were is unknown)."""

    line: int
    reason: str
    external_id: str = ""
    unreadable: bool = False

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"line": self.line, "reason": self.reason}
        if self.external_id:
            row["external_id"] = self.external_id
        return row


@dataclass
class SkippedLog:
    """The records a run skipped: counted exactly, the first KEPT of them kept with their line and
    reason, so an export full of bad lines cannot fill memory."""

    KEPT = 1000

    count: int = 0
    unreadable: int = 0
    kept: list[Skipped] = field(default_factory=list)

    def add(self, item: Skipped) -> None:
        self.count += 1
        self.unreadable += item.unreadable
        if len(self.kept) < self.KEPT:
            self.kept.append(item)

    def to_json(self) -> list[dict[str, Any]]:
        return [item.to_json() for item in self.kept]


class ExportMapping(Protocol):
    """Which keys of an export's records hold the external id, the customer fields and the version."""

    @property
    def source(self) -> str:
        """The source's name, as `--source` takes it."""
        ...

    def customer_record(self, line: int, record: Mapping[str, Any]) -> CustomerRecord:
        """Map one raw record; raise RecordSkipped when it cannot be."""
        ...

    def check_columns(self, columns: Sequence[str]) -> None:
        """Raise ExportError when a CSV with these columns cannot be this source's export."""
        ...


@dataclass(frozen=True)
class StandardMapping:
    """The `standard` source: the webhook contract's own names. `labels` is a JSON list, or in CSV a
    `;`-separated string; `updated_at` (RFC 3339), when present, is the record's version. A key of
    another name skips its JSON record, and a CSV column of another name is refused (`check_columns`):
    in a file written for crmsync it is a misspelling, whose field would silently never sync."""

    source: str = "standard"
    external_id_key: str = "external_id"
    version_key: str = "updated_at"
    field_keys: Mapping[str, str] = field(
        default_factory=lambda: {"name": "name", "description": "description", "labels": "labels"}
    )

    def customer_record(self, line: int, record: Mapping[str, Any]) -> CustomerRecord:
        external_id = external_id_of(record.get(self.external_id_key), self.external_id_key)
        expected = self._keys()
        unknown = [key for key in record if key not in expected]
        if unknown:
            # Named as the CSV header check names them; cut short, as a sender chose them.
            named = ", ".join(str(key)[:MAX_KEY_CHARS] for key in unknown[:MAX_KEYS_NAMED])
            raise RecordSkipped(f"unknown key(s) {named}; expected {', '.join(expected)}", external_id)
        fields: dict[str, Any] = {}
        for customer_field, key in self.field_keys.items():
            if key in record:
                fields[customer_field] = customer_value(customer_field, record[key], key, external_id)
        version = None
        raw_version = record.get(self.version_key)
        if raw_version not in (None, ""):
            version = parse_time(raw_version, self.version_key, external_id)
        return CustomerRecord(line, external_id, fields, version)

    def check_columns(self, columns: Sequence[str]) -> None:
        check_columns(self.source, columns, self._keys(), (self.external_id_key,), unknown_allowed=False)

    def _keys(self) -> tuple[str, ...]:
        return (self.external_id_key, *self.field_keys.values(), self.version_key)


def check_columns(
    source: str,
    columns: Sequence[str],
    expected: Sequence[str],
    id_columns: Sequence[str],
    unknown_allowed: bool,
) -> None:
    """Raise ExportError, naming the expected and the unknown columns, when `columns` has none of
    `id_columns` (a wrong header: every row would be skipped), or has unknown ones where none are."""
    unknown = [name for name in columns if name not in expected]
    has_id = any(name in columns for name in id_columns)
    if has_id and (unknown_allowed or not unknown):
        return
    problem = "unknown column(s) " if has_id else f"no {' or '.join(id_columns)} column; found "
    raise ExportError(
        f"the CSV header does not fit the {source} source: {problem}{', '.join(unknown) or 'none'}; "
        f"expected {', '.join(expected)}"
    )


def external_id_of(value: Any, key: str, prefix: str = "") -> str:
    """The record's external id as text (after `prefix`); raise RecordSkipped when it has none, or one
    the platform could never store (crmsync/core/external_ids.py)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RecordSkipped(f"no usable external id in {key!r}")
    text = str(value).strip()
    if not text:
        raise RecordSkipped(f"no usable external id in {key!r}")
    problem = external_id_problem(prefix + text)
    if problem is not None:
        raise RecordSkipped(f"{key!r}: {problem}")
    return prefix + text


def customer_value(customer_field: str, value: Any, key: str, external_id: str) -> Any:
    """A customer field's value as the platform stores it (labels lower-cased, no duplicates)."""
    if customer_field == "labels":
        return normalize_labels(_labels(value, key, external_id))
    if value is None and customer_field == "description":
        return ""  # The platform's description is never null.
    if not isinstance(value, str):
        raise RecordSkipped(f"{key!r} must be text", external_id)
    if customer_field == "name" and not value.strip():
        raise RecordSkipped(f"{key!r} is empty", external_id)
    return value


def _labels(value: Any, key: str, external_id: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):  # not JSON, an integer past the digit limit, too deep
                raise RecordSkipped(
                    f"{key!r} is neither a JSON list nor ';'-separated", external_id
                ) from None
        else:
            return [part.strip() for part in text.split(LABEL_SEPARATOR) if part.strip()]
    if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
        raise RecordSkipped(f"{key!r} must be a list of text labels", external_id)
    # As a webhook's labels would be: kept as they are, bar empty ones (the contract refuses those).
    return [label for label in value if label]


def parse_time(value: Any, key: str, external_id: str = "") -> str:
    """An RFC 3339 time (with an offset) as UTC with microseconds, the form event timestamps take."""
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("z", "Z"))
    except ValueError:
        raise RecordSkipped(f"{key!r} is not an RFC 3339 time", external_id) from None
    if moment.tzinfo is None:
        raise RecordSkipped(f"{key!r} has no UTC offset", external_id)
    try:
        return utc_isoformat(moment)
    except ValueError as exc:
        raise RecordSkipped(f"{key!r} is {exc}", external_id) from None


def map_records(lines: Iterable[ExportLine], mapping: ExportMapping) -> Iterator[CustomerRecord | Skipped]:
    """Apply `mapping` to every readable record; unreadable lines and unmappable records are Skipped.

    A record versioned in the future is skipped too: the ledger would call every webhook for that
    customer stale until then.
    """
    latest = (datetime.now(UTC) + CLOCK_SKEW).isoformat(timespec="microseconds")
    for export_line in lines:
        if export_line.record is None:
            yield Skipped(export_line.line, export_line.error, unreadable=True)
            continue
        try:
            record = mapping.customer_record(export_line.line, export_line.record)
        except RecordSkipped as exc:
            yield Skipped(export_line.line, str(exc), exc.external_id)
            continue
        if record.version is not None and record.version > latest:
            yield Skipped(export_line.line, "its version is in the future", record.external_id)
            continue
        yield record


def field_digests(fields: Mapping[str, Any]) -> bytes:
    """A short digest of each customer field, in CUSTOMER_FIELDS order (zeros for an absent one).

    The reconcile index keeps these instead of the values: 24 bytes a customer, and still enough to
    name which fields differ.
    """
    parts = []
    for name in CUSTOMER_FIELDS:
        if name not in fields:
            parts.append(bytes(DIGEST_BYTES))
            continue
        value = fields[name]
        if name == "labels":
            value = sorted(value)  # Labels are a set: another order is not drift.
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).digest())
    return b"".join(parts)
