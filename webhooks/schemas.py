"""The webhook body contract, declared once as marshmallow schemas.

An envelope `{"type", "timestamp", "data"}` whose `data` schema depends on `type`. Unknown fields are
rejected everywhere: a CRM that sends a field we would silently drop should hear about it.

marshmallow's `load` costs ~60 µs per event: most of a batch's per-event cost, and a tenth of a
single webhook's. So an event is first checked by plain checks compiled from these same schemas
(`quick_load`, ~5 µs), which accept only what marshmallow accepts and return what it would; anything
they are unsure of (every invalid event, and a few odd valid ones) goes through marshmallow
(`full_load`), which decides and words the field errors. tests/test_schemas.py checks, on generated
bodies, that the two never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate

from crmsync.core.events import (
    CUSTOMER_CREATED,
    CUSTOMER_DELETED,
    CUSTOMER_MERGED,
    CUSTOMER_UPDATED,
    ERASURE_REQUESTED,
    EVENT_TYPES,
)
from crmsync.core.external_ids import external_id_problem

__all__ = ["load_event", "quick_load", "full_load", "quick_schema", "ValidationError"]

NonEmpty = validate.Length(min=1)


class ExternalId(validate.Validator):
    """An id the platform can store (crmsync/core/external_ids.py): refused here with the reason."""

    def __call__(self, value: Any) -> Any:
        problem = external_id_problem(value)
        if problem is not None:
            raise ValidationError(problem)
        return value


EXTERNAL_ID = ExternalId()
# The platform's purchase ids are GraphQL `Int`s: 32-bit signed, so a larger one could never succeed.
PurchaseId = validate.Range(min=1, max=2**31 - 1)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class CustomerCreatedData(_Strict):
    external_id = fields.String(required=True, validate=EXTERNAL_ID)
    name = fields.String(required=True, validate=NonEmpty)
    description = fields.String()
    labels = fields.List(fields.String(validate=NonEmpty))


class CustomerUpdatedData(CustomerCreatedData):
    name = fields.String(validate=NonEmpty)


class CustomerDeletedData(_Strict):
    external_id = fields.String(required=True, validate=EXTERNAL_ID)


class ErasureRequestedData(_Strict):
    external_id = fields.String(required=True, validate=EXTERNAL_ID)
    purchase_ids = fields.List(
        fields.Integer(strict=True, validate=PurchaseId), required=True, validate=NonEmpty
    )


class CustomerMergedData(_Strict):
    external_id = fields.String(required=True, validate=EXTERNAL_ID)
    merged_ids = fields.List(fields.String(validate=EXTERNAL_ID), required=True, validate=NonEmpty)


DATA_SCHEMAS: dict[str, Schema] = {
    CUSTOMER_CREATED: CustomerCreatedData(),
    CUSTOMER_UPDATED: CustomerUpdatedData(),
    CUSTOMER_DELETED: CustomerDeletedData(),
    ERASURE_REQUESTED: ErasureRequestedData(),
    CUSTOMER_MERGED: CustomerMergedData(),
}
assert tuple(DATA_SCHEMAS) == EVENT_TYPES, "one data schema per event type"


class UtcDateTime(fields.AwareDateTime):
    """An RFC 3339 time with an offset, loaded as UTC: years 1 to 9999 once in UTC, as Python's
    datetime holds (`0001-01-01T00:00:00+14:00` is in year 0 in UTC, so it is refused)."""

    default_error_messages = {"out_of_range": "Not a time between years 1 and 9999 in UTC."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise self.make_error("out_of_range") from None


class Envelope(_Strict):
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    timestamp = UtcDateTime(required=True, format="iso")
    data = fields.Dict(required=True)


_ENVELOPE = Envelope()


def load_event(payload: Any) -> dict[str, Any]:
    """Validate a decoded JSON body; return `{type, timestamp (RFC 3339, UTC), data}`.

    Raises ValidationError whose `messages` map each bad field (nested under `data`) to its messages.
    """
    event = quick_load(payload)
    return event if event is not None else full_load(payload)


def full_load(payload: Any) -> dict[str, Any]:
    """`load_event` through marshmallow alone."""
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["The body must be a JSON object."]})
    envelope = _ENVELOPE.load(payload)
    try:
        data = DATA_SCHEMAS[envelope["type"]].load(envelope["data"])
    except ValidationError as err:
        raise ValidationError({"data": err.messages}) from err
    return _event(envelope["type"], envelope["timestamp"], data)


def quick_load(payload: Any) -> dict[str, Any] | None:
    """What `full_load` returns for `payload`, when plain checks show it is a valid event; None when
    they cannot tell (then only marshmallow decides)."""
    if type(payload) is not dict or payload.keys() != _ENVELOPE_FIELDS:
        return None
    event_type, timestamp, data = payload["type"], payload["timestamp"], payload["data"]
    load_data = _QUICK_DATA.get(event_type) if type(event_type) is str else None
    if load_data is None or type(timestamp) is not str:
        return None
    try:
        moment = datetime.fromisoformat(timestamp)  # what fields.DateTime(format="iso") parses with
        if moment.utcoffset() is None:
            return None
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    loaded = load_data(data)
    return None if loaded is None else _event(event_type, moment, loaded)


def _event(event_type: str, moment: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": moment.isoformat(timespec="microseconds"), "data": data}


_Check = Callable[[Any], bool]


def quick_schema(schema: Schema) -> Callable[[Any], dict[str, Any] | None]:
    """A schema's plain check: a dict with its required fields and no others, each passing its
    field's check, is returned as marshmallow would load it (a copy); anything else, None."""
    checks = {name: _quick_field(field) for name, field in schema.fields.items()}
    required = frozenset(name for name, field in schema.fields.items() if field.required)
    for name, field in schema.fields.items():
        # A field renamed, or filled in when missing, would load to something else than was sent.
        if field.data_key is not None or field.attribute is not None or field.load_default is not missing:
            raise TypeError(f"no quick check for {name}: renamed or defaulted fields load to other data")

    def load(data: Any) -> dict[str, Any] | None:
        if type(data) is not dict or not required <= data.keys():
            return None
        for name, value in data.items():
            check = checks.get(name)
            if check is None or not check(value):
                return None
        return {name: list(value) if type(value) is list else value for name, value in data.items()}

    return load


def _quick_field(field: fields.Field) -> _Check:
    """A value the field loads as it is (same type, its validators pass). Only the field types the
    contract uses are known here: another one fails at import, not silently."""
    rules = [_quick_rule(validator) for validator in field.validators]
    kind: _Check
    if type(field) is fields.String:
        kind = _is_str
    elif type(field) is fields.Integer and field.strict:
        kind = _is_int  # not bool, which marshmallow's Integer also takes (then it decides)
    elif type(field) is fields.List:
        inner = _quick_field(field.inner)
        kind = lambda value: type(value) is list and all(map(inner, value))  # noqa: E731
    else:
        raise TypeError(f"no quick check for {type(field).__name__}: add one or leave it to marshmallow")
    if not rules:
        return kind
    return lambda value: kind(value) and all(rule(value) for rule in rules)


def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_int(value: Any) -> bool:
    return type(value) is int


def _quick_rule(validator: Any) -> _Check:
    if type(validator) is validate.Length and validator.equal is None:
        low, high = validator.min, validator.max
        return lambda value: (low is None or len(value) >= low) and (high is None or len(value) <= high)
    if type(validator) is validate.Range and validator.min_inclusive and validator.max_inclusive:
        least, most = validator.min, validator.max
        return lambda value: (least is None or value >= least) and (most is None or value <= most)
    if validator is EXTERNAL_ID:
        return lambda value: external_id_problem(value) is None
    raise TypeError(f"no quick check for {validator!r}")


_ENVELOPE_FIELDS = frozenset(_ENVELOPE.fields)
assert all(field.required for field in _ENVELOPE.fields.values()), "quick_load wants them all"
_QUICK_DATA = {event_type: quick_schema(schema) for event_type, schema in DATA_SCHEMAS.items()}
