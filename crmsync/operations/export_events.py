"""Events made from an export's records, in the webhook contract's shape, for the normal pipeline.

An event's timestamp (its version) is the record's own version when the mapping has one, else the
export's `as_of` time: a webhook stamped after the export always wins over it.

Delivery ids are chosen for the ledger's tie-break (`Event.version` orders equal timestamps by
webhook id):
- an import's id is a digest of the event itself, so re-running the same import yields the same
  deliveries — already accepted, or stale for the ledger: nothing is sent twice;
- a reconcile run's ids start with `reconcile:` and the run's start time, so a later run's repair
  outranks an import and earlier runs of the same export (a hand edit on the platform is not in the
  ledger: only a newer version can undo it).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from crmsync.core.events import CUSTOMER_CREATED, CUSTOMER_DELETED, CUSTOMER_UPDATED, Event
from webhooks.schemas import ValidationError, load_event

from .records import CustomerRecord, RecordSkipped

__all__ = ["import_event", "reconcile_event", "utc_timestamp"]


def utc_timestamp(moment: datetime) -> str:
    """An aware time as the contract's RFC 3339 UTC with microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def import_event(record: CustomerRecord, as_of: str) -> Event:
    """The upsert event for one record: `customer.updated` with the fields the record carries (it
    creates the customer when it has a name and the platform does not have it yet)."""
    event = _validated(record, CUSTOMER_UPDATED, record.fields, as_of)
    digest = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()[:32]
    return Event.from_payload({"webhook_id": f"import:{digest}", **event})


def reconcile_event(
    run_id: str,
    kind: str,
    external_id: str,
    as_of: str,
    record: CustomerRecord | None = None,
    fields: tuple[str, ...] = (),
) -> Event:
    """The event that carries out one step of a reconcile plan: `create` (every field the record
    has), `update` (only the `fields` that differ) or `delete`."""
    webhook_id = f"reconcile:{run_id}:{kind}:{external_id}"
    if kind == "delete":
        event = load_event(
            {"type": CUSTOMER_DELETED, "timestamp": as_of, "data": {"external_id": external_id}}
        )
    else:
        assert record is not None
        carried = record.fields if kind == "create" else {name: record.fields[name] for name in fields}
        event = _validated(record, CUSTOMER_CREATED if kind == "create" else CUSTOMER_UPDATED, carried, as_of)
    return Event.from_payload({"webhook_id": webhook_id, **event})


def _validated(record: CustomerRecord, event_type: str, fields: dict[str, Any], as_of: str) -> dict[str, Any]:
    """The event through the webhook contract's own schema, exactly as a webhook's would be."""
    payload = {
        "type": event_type,
        "timestamp": record.version or as_of,
        "data": {"external_id": record.external_id, **fields},
    }
    try:
        return load_event(payload)
    except ValidationError as exc:
        raise RecordSkipped(
            f"breaks the webhook contract: {_field_names(exc.messages)}", record.external_id
        ) from None


def _field_names(messages: Any, prefix: str = "") -> str:
    """The names of the invalid fields (never the messages' values) from marshmallow's error dict."""
    if not isinstance(messages, dict):
        return prefix or "record"
    names = [
        _field_names(inner, f"{prefix}{key}." if isinstance(inner, dict) else f"{prefix}{key}")
        for key, inner in messages.items()
    ]
    return ", ".join(names)
