"""Pipedrive webhooks v2: one event per request, `{"meta", "data", "previous"}`, HTTP Basic auth.

An event of a mapped entity (`[pipedrive.<entity>]`) becomes:
- `create` / `change`: `customer.updated` with the mapped fields of `data` (the record's current
  state; the customer is created when it does not exist yet and the name is mapped);
- `delete`: `customer.deleted`, the id taken from `previous` or `meta.entity_id` (`data` is null).
  A merge sends a `delete` of the merged-away record and a `change` of the kept one: both apply;
- for an erasure entity (action `erasure`): its `create` becomes `customer.erasure_requested`; its
  later changes and deletion are ignored.
Ordering uses `meta.timestamp` (ISO 8601, or unix seconds as 10 digits); the delivery id is `meta.id`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from crmsync.core.events import CUSTOMER_DELETED
from crmsync.core.parsing import ascii_int, utc_isoformat

from ..mappings import ERASURE, RecordMapping, field_value
from .items import (
    AuthenticationFailed,
    IgnoredItem,
    InboundRequest,
    InvalidItem,
    MappedEvent,
    RejectedItem,
    SourceBatch,
    UnparseableBody,
    item_isolation,
    json_body,
    record_event,
    validated_event,
)

__all__ = ["NAME", "PipedriveSource", "verify_basic_auth", "read_event"]

NAME = "pipedrive"


class PipedriveSource:
    """Verifies and maps events from Pipedrive webhooks set up with HTTP Basic credentials."""

    name = NAME
    soap = False

    def __init__(self, user: str, password: str, mappings: Mapping[str, RecordMapping]) -> None:
        self._user = user
        self._password = password
        self._mappings = mappings

    def authenticate(self, request: InboundRequest) -> None:
        verify_basic_auth(request.header("Authorization"), self._user, self._password)

    def read(self, body: bytes) -> SourceBatch:
        return read_event(body, self._mappings)


def verify_basic_auth(authorization: str, user: str, password: str) -> None:
    """Check an `Authorization: Basic` header; user and password both compared in constant time."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise AuthenticationFailed("missing_credentials", "HTTP Basic credentials are required")
    try:
        credentials = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("malformed_credentials", "the Basic credentials are not base64") from None
    given_user, separator, given_password = credentials.partition(b":")
    user_ok = hmac.compare_digest(given_user, user.encode())
    password_ok = hmac.compare_digest(given_password, password.encode())
    if not (separator and user_ok and password_ok):
        raise AuthenticationFailed("invalid_credentials", "the Basic credentials do not match")


def read_event(body: bytes, mappings: Mapping[str, RecordMapping]) -> SourceBatch:
    """Map a Pipedrive body to one crmsync event, an ignored or a rejected item."""
    payload = json_body(body)
    if not isinstance(payload, dict):
        raise UnparseableBody("Pipedrive sends a JSON object.")
    batch = SourceBatch(NAME)
    meta = payload.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("entity"), str):
        batch.rejected.append(RejectedItem("not a webhooks v2 body (meta.entity missing)", {}))
        return batch
    entity, action = meta["entity"], str(meta.get("action", ""))
    mapping = mappings.get(entity)
    if mapping is None or (mapping.action == ERASURE and action != "create"):
        batch.ignored.append(IgnoredItem(f"{entity}.{action}"))
        return batch
    with item_isolation(batch, lambda: _identifiers(meta)):
        delivery_id = f"{NAME}:{_required_text(meta, 'id')}"
        batch.events.append(MappedEvent(delivery_id, _event(action, meta, payload, mapping)))
    return batch


def _event(
    action: str, meta: dict[str, Any], payload: dict[str, Any], mapping: RecordMapping
) -> dict[str, Any]:
    timestamp = _timestamp(meta.get("timestamp"))
    if action == "delete":
        previous = payload.get("previous")
        found, record_id = field_value(previous if isinstance(previous, dict) else {}, mapping.external_id)
        if not found or record_id in (None, ""):
            record_id = meta.get("entity_id") if mapping.external_id == "id" else None
        external_id = mapping.external_id_prefix + _text(record_id, mapping.external_id)
        return validated_event(CUSTOMER_DELETED, timestamp, {"external_id": external_id})
    if action not in ("create", "change"):
        raise InvalidItem(f"unknown meta.action for {meta['entity']}")
    record = payload.get("data")
    if not isinstance(record, dict):
        raise InvalidItem(f"{action} without data")
    record_id = field_value(record, mapping.external_id)[1]
    external_id = mapping.external_id_prefix + _text(record_id, mapping.external_id)
    return record_event(mapping, record, external_id, timestamp)


def _text(value: Any, name: str) -> str:
    if value is None or isinstance(value, bool | dict | list) or str(value).strip() == "":
        raise InvalidItem(f"missing external id field {name}")
    return str(value).strip()


def _required_text(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    if value is None or str(value).strip() == "":
        raise InvalidItem(f"missing meta.{key}")
    return str(value).strip()


def _timestamp(value: Any) -> str:
    """meta.timestamp: ISO 8601 as in Pipedrive's example, or unix seconds (10 digits) as described."""
    text = value.strip() if isinstance(value, str) else str(value) if type(value) is int else ""
    seconds = ascii_int(text, 10) if len(text) == 10 else None
    try:
        moment = datetime.fromtimestamp(seconds, UTC) if seconds is not None else datetime.fromisoformat(text)
    except ValueError:
        raise InvalidItem("missing or invalid meta.timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return utc_isoformat(moment)
    except ValueError as exc:
        raise InvalidItem(f"meta.timestamp is {exc}") from None


def _identifiers(meta: dict[str, Any]) -> dict[str, str]:
    """Ids of a rejected event: meta's ids and kinds, never a value of the record."""
    keys = ("id", "entity", "action", "entity_id", "company_id", "webhook_id")
    return {key: str(meta[key]) for key in keys if key in meta and not isinstance(meta[key], dict | list)}
