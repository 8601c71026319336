"""Record-style mappings, shared by the sources whose notifications carry a record's fields
(Salesforce sObjects, Pipedrive entities, declared sources): one table per record type, either synced
to a customer or (action `erasure`) a GDPR erasure request; and how a mapped value becomes a field."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError, fields

from crmsync.core.parsing import ascii_int

from .mapping_file import StrictSchema, load_table

__all__ = [
    "SYNC",
    "ERASURE",
    "RecordMapping",
    "RecordFields",
    "check_action",
    "record_mappings",
    "describe_records",
    "record_lines",
    "RecordMappingKind",
    "field_value",
    "customer_field_value",
    "labels_from",
    "purchase_ids_from",
]

SYNC = "sync"
ERASURE = "erasure"
LABEL_SEPARATOR = ";"
# Past 20 digits a purchase id is no number the platform holds (its schema refuses what is too large).
PURCHASE_ID_MAX_DIGITS = 20


@dataclass(frozen=True)
class RecordMapping:
    """A record type whose notifications carry the record's fields (a Salesforce sObject, a Pipedrive
    entity): either synced to a customer, or (action `erasure`) a GDPR erasure request."""

    record_type: str
    external_id: str
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    action: str = SYNC
    version: str = ""
    deleted: str = ""
    purchase_ids: str = ""
    external_id_prefix: str = ""

    def customer_data(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The customer fields `record` carries; a field whose properties are all absent is left as is."""
        data = {}
        for customer_field, names in self.fields.items():
            found = [value for found, value in (field_value(record, name) for name in names) if found]
            if found:
                data[customer_field] = customer_field_value(customer_field, found)
        return data


# --- values -----------------------------------------------------------------------------------------


def field_value(record: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """(found, value) of field `name` in `record`; a dotted name reaches into nested objects."""
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def customer_field_value(customer_field: str, values: list[Any]) -> Any:
    """What the mapped `values` write into `customer_field`: labels from all, text from the first."""
    if customer_field == "labels":
        return labels_from(values)
    # A cleared text field arrives empty or nil; an empty name is then rejected by the event schema.
    return "" if values[0] is None else str(values[0])


def labels_from(values: list[Any]) -> list[str]:
    """Labels from the values of the mapped properties: a list gives one label per item, a string is
    split on ";" (HubSpot's and Salesforce's multi-select format); empty values give none."""
    labels: list[str] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None or isinstance(item, bool | dict):
                continue
            labels += [part.strip() for part in str(item).split(LABEL_SEPARATOR) if part.strip()]
    return labels


def purchase_ids_from(value: Any) -> list[int]:
    """Purchase ids from a field holding them separated by "," or ";"; ValueError names no value."""
    if isinstance(value, list):
        parts = [str(item) for item in value]
    else:
        parts = re.split(r"[,;]", "" if value is None else str(value))
    ids = []
    for part in (part.strip() for part in parts):
        if not part:
            continue
        number = ascii_int(part, PURCHASE_ID_MAX_DIGITS)
        if number is None:
            raise ValueError("purchase ids must be whole numbers separated by ',' or ';'")
        ids.append(number)
    return ids


# --- the file's tables ------------------------------------------------------------------------------


class PropertyNames(fields.Field):
    """One field name, or a list of them (each non-empty value becomes one label)."""

    default_error_messages = {"invalid": "must be a field name or a list of field names"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise self.make_error("invalid")
        return tuple(names)


class SingleName(fields.Field):
    """Exactly one field name (only labels may be fed by several)."""

    default_error_messages = {"invalid": "must be one field name (only labels may list several)"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        if not isinstance(value, str) or not value:
            raise self.make_error("invalid")
        return (value,)


class RecordFields(StrictSchema):
    name = SingleName()
    description = SingleName()
    labels = PropertyNames()


def check_action(data: dict[str, Any]) -> None:
    """What a record type's action needs and excludes (a schema's `validates_schema`)."""
    if data["action"] == ERASURE:
        if "purchase_ids" not in data:
            raise ValidationError('required when action = "erasure"', "purchase_ids")
        for key, wire in (("customer_fields", "fields"), ("deleted", "deleted")):
            if key in data:
                raise ValidationError('not used when action = "erasure"', wire)
    else:
        if "customer_fields" not in data:
            raise ValidationError("required: the customer fields this record type feeds", "fields")
        if "purchase_ids" in data:
            raise ValidationError('only used when action = "erasure"', "purchase_ids")


def record_mappings(
    table: Any, source: str, schema: Schema, errors: list[str], default_deleted: Callable[[str], str]
) -> dict[str, RecordMapping]:
    """A source's table of record types (`[source.<type>]`, and `external_id_prefix` for all of
    them); `default_deleted(action)` is the deleted-flag field when a type names none."""
    if not isinstance(table, dict):
        errors.append(f"{source}: must be a table of record types")
        return {}
    prefix = table.get("external_id_prefix", "")
    if not isinstance(prefix, str):
        errors.append(f"{source}.external_id_prefix: Not a valid string.")
    mappings = {}
    for record_type, entry in table.items():
        if record_type == "external_id_prefix":
            continue
        loaded = load_table(schema, entry, f"{source}.{record_type}", errors)
        if loaded is None:
            continue
        mappings[record_type] = RecordMapping(
            record_type,
            external_id=loaded["external_id"],
            fields=loaded.get("customer_fields", {}),
            action=loaded["action"],
            version=loaded.get("version", ""),
            deleted=loaded.get("deleted", default_deleted(loaded["action"])),
            purchase_ids=loaded.get("purchase_ids", ""),
            external_id_prefix=prefix if isinstance(prefix, str) else "",
        )
    if not mappings and not any(line.startswith(f"{source}.") for line in errors):
        errors.append(f"{source}: names no record type to map")
    return mappings


def record_lines(source: str, mappings: Mapping[str, RecordMapping]) -> list[str]:
    """Record mappings as `crmsync mappings show` prints them: a heading per record type, then its
    version, deleted and purchase ids fields and each customer field's."""
    lines = []
    for record_type, mapping in mappings.items():
        prefix = f' (prefixed "{mapping.external_id_prefix}")' if mapping.external_id_prefix else ""
        lines.append(
            f"\n{source} {record_type}: {mapping.action}, external id = {mapping.external_id}{prefix}"
        )
        for key in ("version", "deleted", "purchase_ids"):
            if getattr(mapping, key):
                lines.append(f"  {key:<12} <- {getattr(mapping, key)}")
        lines += [f"  {field:<12} <- {', '.join(names)}" for field, names in mapping.fields.items()]
    return lines


def describe_records(mappings: Mapping[str, RecordMapping]) -> dict[str, Any]:
    """Record mappings as plain data, for `crmsync mappings show`."""
    described = {}
    for name, mapping in mappings.items():
        entry = asdict(mapping)
        entry.pop("record_type")
        entry["fields"] = {customer_field: list(props) for customer_field, props in mapping.fields.items()}
        described[name] = entry
    return described


class RecordMappingKind:
    """What a source kind mapped by record type (Salesforce's sObjects, Pipedrive's entities) says
    of its mapping: `crmsync mappings show`'s data and lines, and the external id prefixes in use."""

    name: str

    def describe_mapping(self, mapping: Mapping[str, RecordMapping]) -> Any:
        return describe_records(mapping)

    def mapping_lines(self, mapping: Mapping[str, RecordMapping]) -> list[str]:
        return record_lines(self.name, mapping)

    def id_prefixes(self, mapping: Mapping[str, RecordMapping]) -> set[str]:
        return {record.external_id_prefix for record in mapping.values()}
