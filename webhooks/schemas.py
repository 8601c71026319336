"""The webhook body contract, declared once as marshmallow schemas.

An envelope `{"type", "timestamp", "data"}` whose `data` schema depends on `type`. Unknown fields are
rejected everywhere: a CRM that sends a field we would silently drop should hear about it.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

__all__ = ["EVENT_TYPES", "load_event", "ValidationError"]

NonEmpty = validate.Length(min=1)


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
        fields.Integer(strict=True, validate=validate.Range(min=1)), required=True, validate=NonEmpty
    )


DATA_SCHEMAS: dict[str, Schema] = {
    "customer.created": CustomerCreatedData(),
    "customer.updated": CustomerUpdatedData(),
    "customer.deleted": CustomerDeletedData(),
    "customer.erasure_requested": ErasureRequestedData(),
}
EVENT_TYPES = tuple(DATA_SCHEMAS)


class Envelope(_Strict):
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    timestamp = fields.AwareDateTime(required=True, format="iso")
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
        "timestamp": envelope["timestamp"].astimezone(UTC).isoformat(timespec="microseconds"),
        "data": data,
    }
