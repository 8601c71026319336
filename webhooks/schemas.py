"""The webhook body contract, declared once as marshmallow schemas.

An envelope `{"type", "timestamp", "data"}` whose `data` schema depends on `type`. Unknown fields are
rejected everywhere: a CRM that sends a field we would silently drop should hear about it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from crmsync.core.events import (
    CUSTOMER_CREATED,
    CUSTOMER_DELETED,
    CUSTOMER_UPDATED,
    ERASURE_REQUESTED,
    EVENT_TYPES,
)

__all__ = ["load_event", "ValidationError"]

NonEmpty = validate.Length(min=1)
# The platform's purchase ids are GraphQL `Int`s: 32-bit signed, so a larger one could never succeed.
PurchaseId = validate.Range(min=1, max=2**31 - 1)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class CustomerCreatedData(_Strict):
    external_id = fields.String(required=True, validate=NonEmpty)
    name = fields.String(required=True, validate=NonEmpty)
    description = fields.String()
    labels = fields.List(fields.String(validate=NonEmpty))


class CustomerUpdatedData(CustomerCreatedData):
    name = fields.String(validate=NonEmpty)


class CustomerDeletedData(_Strict):
    external_id = fields.String(required=True, validate=NonEmpty)


class ErasureRequestedData(_Strict):
    external_id = fields.String(required=True, validate=NonEmpty)
    purchase_ids = fields.List(
        fields.Integer(strict=True, validate=PurchaseId), required=True, validate=NonEmpty
    )


DATA_SCHEMAS: dict[str, Schema] = {
    CUSTOMER_CREATED: CustomerCreatedData(),
    CUSTOMER_UPDATED: CustomerUpdatedData(),
    CUSTOMER_DELETED: CustomerDeletedData(),
    ERASURE_REQUESTED: ErasureRequestedData(),
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
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["The body must be a JSON object."]})
    envelope = _ENVELOPE.load(payload)
    try:
        data = DATA_SCHEMAS[envelope["type"]].load(envelope["data"])
    except ValidationError as err:
        raise ValidationError({"data": err.messages}) from err
    return {
        "type": envelope["type"],
        "timestamp": envelope["timestamp"].isoformat(timespec="microseconds"),
        "data": data,
    }
