"""Field mappings: which CRM property feeds which customer field, per source.

Each source has defaults that work without any file; `CRMSYNC_MAPPINGS` names a TOML file whose
tables replace a source's defaults (a source the file does not name keeps its defaults). The file is
validated once, at start-up, by the marshmallow schemas below: every mistake is one line naming the
key, e.g. `hubspot.fields.labels: HubSpot sends one property per event: name one property, not a list`.

```toml
[hubspot]
external_id_prefix = "hs-"        # optional, on every source; prefixes every external id it maps
object = "company"                # optional: the HubSpot object whose events are mapped, by name
                                  # or type id ("0-2" is company; a custom object "2-12345")
[hubspot.fields]                  # customer field = CRM property
name = "name"
labels = "industry"               # a value is split on ";" (HubSpot and Salesforce multi-selects)

[salesforce.Account]              # one table per sObject type
external_id = "Id"
version = "LastModifiedDate"      # default; the CRM's clock for ordering
deleted = "IsDeleted"             # default; a true checkbox deletes the customer
[salesforce.Account.fields]
name = "Name"
labels = ["Industry", "Type"]     # several fields: each non-empty value is one label

[salesforce.Privacy_Request__c]   # a GDPR erasure request
action = "erasure"
external_id = "Account_External_Id__c"
purchase_ids = "Purchase_Ids__c"  # ids separated by "," or ";"

[pipedrive.organization]          # one table per entity; external_id defaults to "id"
[pipedrive.organization.fields]
name = "name"                     # a dotted path reaches nested values: "custom_fields.<key>"
```
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from crmsync.core.parsing import ascii_int

from .declarations import SourceDeclaration, load_declarations

__all__ = [
    "MappingError",
    "HubSpotMapping",
    "RecordMapping",
    "Mappings",
    "DEFAULT_MAPPINGS",
    "load_mappings",
    "mappings_from_env",
    "labels_from",
    "field_value",
    "purchase_ids_from",
    "SYNC",
    "ERASURE",
]

SYNC = "sync"
ERASURE = "erasure"
LABEL_SEPARATOR = ";"
# Past 20 digits a purchase id is no number the platform holds (its schema refuses what is too large).
PURCHASE_ID_MAX_DIGITS = 20


class MappingError(ValueError):
    """The mappings file is unreadable or invalid; each line of the message names one key."""


@dataclass(frozen=True)
class HubSpotMapping:
    """HubSpot sends one property per `propertyChange` event: each customer field names one property.
    `object` is a name (`company`) or a type id (`0-2`, a custom object's `2-12345`)."""

    fields: Mapping[str, str]
    object: str = "company"
    external_id_prefix: str = ""

    def customer_data(self, property_name: str, value: Any) -> dict[str, Any]:
        """The customer fields a change of `property_name` to `value` writes (empty: not mapped)."""
        return {
            customer_field: _field_value(customer_field, [value])
            for customer_field, prop in self.fields.items()
            if prop == property_name
        }


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
                data[customer_field] = _field_value(customer_field, found)
        return data


@dataclass(frozen=True)
class Mappings:
    """The mappings in force for every source."""

    hubspot: HubSpotMapping
    salesforce: Mapping[str, RecordMapping]
    pipedrive: Mapping[str, RecordMapping]
    path: str = ""
    # CRMs declared under [sources.NAME] (webhooks/declarations.py), served at /webhooks/NAME.
    sources: Mapping[str, SourceDeclaration] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The mappings as plain data, for `crmsync mappings show`."""
        return {
            "file": self.path or "(none: defaults)",
            "hubspot": asdict(self.hubspot),
            "salesforce": {name: _describe(mapping) for name, mapping in self.salesforce.items()},
            "pipedrive": {name: _describe(mapping) for name, mapping in self.pipedrive.items()},
            "sources": {name: asdict(declaration) for name, declaration in self.sources.items()},
        }


def _describe(mapping: RecordMapping) -> dict[str, Any]:
    described = asdict(mapping)
    described.pop("record_type")
    described["fields"] = {name: list(props) for name, props in mapping.fields.items()}
    return described


DEFAULT_MAPPINGS = Mappings(
    hubspot=HubSpotMapping(fields={"name": "name", "description": "description"}),
    salesforce={
        "Account": RecordMapping(
            "Account",
            external_id="Id",
            fields={"name": ("Name",), "description": ("Description",)},
            version="LastModifiedDate",
            deleted="IsDeleted",
        )
    },
    pipedrive={"organization": RecordMapping("organization", external_id="id", fields={"name": ("name",)})},
)


# --- values -----------------------------------------------------------------------------------------


def field_value(record: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """(found, value) of field `name` in `record`; a dotted name reaches into nested objects."""
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _field_value(customer_field: str, values: list[Any]) -> Any:
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


# --- the file's schemas -----------------------------------------------------------------------------


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class OneProperty(fields.String):
    """A single property name, where the CRM sends one property per event."""

    default_error_messages = {
        "invalid": "HubSpot sends one property per event: name one property, not a list",
    }


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


class HubSpotFields(_Strict):
    name = OneProperty(validate=validate.Length(min=1))
    description = OneProperty(validate=validate.Length(min=1))
    labels = OneProperty(validate=validate.Length(min=1))


class HubSpotSchema(_Strict):
    external_id_prefix = fields.String(load_default="")
    # An object's name (`company`) or HubSpot's type id (`0-2`; a custom object's `2-12345`).
    object = fields.String(
        load_default="company",
        validate=validate.Regexp(
            r"^([a-z_]+|[0-9]+-[0-9]+)$", error="an object name (company) or type id (0-2, 2-12345)"
        ),
    )
    customer_fields = fields.Nested(
        HubSpotFields, data_key="fields", required=True, validate=validate.Length(min=1)
    )


class RecordFields(_Strict):
    name = SingleName()
    description = SingleName()
    labels = PropertyNames()


class SalesforceObjectSchema(_Strict):
    action = fields.String(load_default=SYNC, validate=validate.OneOf([SYNC, ERASURE]))
    external_id = fields.String(required=True, validate=validate.Length(min=1))
    version = fields.String(load_default="LastModifiedDate", validate=validate.Length(min=1))
    deleted = fields.String(validate=validate.Length(min=1))
    purchase_ids = fields.String(validate=validate.Length(min=1))
    customer_fields = fields.Nested(RecordFields, data_key="fields", validate=validate.Length(min=1))

    @validates_schema
    def _action_needs(self, data: dict[str, Any], **kwargs: Any) -> None:
        _check_action(data)


class PipedriveEntitySchema(_Strict):
    action = fields.String(load_default=SYNC, validate=validate.OneOf([SYNC, ERASURE]))
    external_id = fields.String(load_default="id", validate=validate.Length(min=1))
    purchase_ids = fields.String(validate=validate.Length(min=1))
    customer_fields = fields.Nested(RecordFields, data_key="fields", validate=validate.Length(min=1))

    @validates_schema
    def _action_needs(self, data: dict[str, Any], **kwargs: Any) -> None:
        _check_action(data)


def _check_action(data: dict[str, Any]) -> None:
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


_HUBSPOT = HubSpotSchema()
_SALESFORCE_OBJECT = SalesforceObjectSchema()
_PIPEDRIVE_ENTITY = PipedriveEntitySchema()
_SOURCES = ("hubspot", "salesforce", "pipedrive", "sources")


def load_mappings(path: str) -> Mappings:
    """Read and validate the mappings file at `path`; MappingError lists one line per bad key."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise MappingError(f"CRMSYNC_MAPPINGS: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"CRMSYNC_MAPPINGS: {path} is not valid TOML: {exc}") from exc
    return mappings_from_document(document, path)


def mappings_from_document(document: Mapping[str, Any], path: str = "") -> Mappings:
    """Validate a decoded TOML document; sources it leaves out keep their defaults."""
    errors: list[str] = [f"{key}: unknown source (expected one of {', '.join(_SOURCES)})"
                         for key in document if key not in _SOURCES]  # fmt: skip
    hubspot = DEFAULT_MAPPINGS.hubspot
    if "hubspot" in document:
        loaded = _load(_HUBSPOT, document["hubspot"], "hubspot", errors)
        if loaded is not None:
            hubspot = HubSpotMapping(
                fields=loaded["customer_fields"],
                object=loaded["object"],
                external_id_prefix=loaded["external_id_prefix"],
            )
    salesforce = DEFAULT_MAPPINGS.salesforce
    if "salesforce" in document:
        salesforce = _record_mappings(document["salesforce"], "salesforce", _SALESFORCE_OBJECT, errors)
    pipedrive = DEFAULT_MAPPINGS.pipedrive
    if "pipedrive" in document:
        pipedrive = _record_mappings(document["pipedrive"], "pipedrive", _PIPEDRIVE_ENTITY, errors)
    sources = load_declarations(document["sources"], errors) if "sources" in document else {}
    if errors:
        where = f" ({path})" if path else ""
        raise MappingError("\n".join(f"CRMSYNC_MAPPINGS{where}: {line}" for line in errors))
    return Mappings(hubspot=hubspot, salesforce=salesforce, pipedrive=pipedrive, path=path, sources=sources)


def _record_mappings(table: Any, source: str, schema: Schema, errors: list[str]) -> dict[str, RecordMapping]:
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
        loaded = _load(schema, entry, f"{source}.{record_type}", errors)
        if loaded is None:
            continue
        mappings[record_type] = RecordMapping(
            record_type,
            external_id=loaded["external_id"],
            fields=loaded.get("customer_fields", {}),
            action=loaded["action"],
            version=loaded.get("version", ""),
            deleted=loaded.get("deleted", _default_deleted(source, loaded["action"])),
            purchase_ids=loaded.get("purchase_ids", ""),
            external_id_prefix=prefix if isinstance(prefix, str) else "",
        )
    if not mappings and not any(line.startswith(f"{source}.") for line in errors):
        errors.append(f"{source}: names no record type to map")
    return mappings


def _default_deleted(source: str, action: str) -> str:
    # Salesforce flags a deleted record with a checkbox; Pipedrive sends a `delete` action instead.
    return "IsDeleted" if source == "salesforce" and action == SYNC else ""


def _load(schema: Schema, entry: Any, path: str, errors: list[str]) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        errors.append(f"{path}: must be a table")
        return None
    try:
        return dict(schema.load(entry))
    except ValidationError as err:
        errors.extend(_lines(err.messages, path))
        return None


def _lines(messages: Any, path: str) -> list[str]:
    if isinstance(messages, dict):
        return [line for key, value in messages.items()
                for line in _lines(value, path if key == "_schema" else f"{path}.{key}")]  # fmt: skip
    if isinstance(messages, list):
        return [f"{path}: {' '.join(_READABLE.get(str(m), str(m)) for m in messages)}"]
    return [f"{path}: {messages}"]


_READABLE = {"Unknown field.": "unknown key", "Missing data for required field.": "missing (required)"}


def mappings_from_env(environ: Mapping[str, str] | None = None) -> Mappings:
    """The mappings in force: the file named by CRMSYNC_MAPPINGS, else the defaults."""
    env = os.environ if environ is None else environ
    path = env.get("CRMSYNC_MAPPINGS", "").strip()
    return load_mappings(path) if path else DEFAULT_MAPPINGS
