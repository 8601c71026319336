"""Pipedrive webhooks, v2 (`{"meta", "data", "previous"}`) and v1 (`{"v": 1, "meta", "current",
"previous", "retry"}`): one event per request, HTTP Basic auth. Both use the same mapping file.

An event of a mapped entity (`[pipedrive.<entity>]`; v2 `meta.entity`, v1 `meta.object`) becomes:
- v2 `create` / `change`, v1 `added` / `updated`: `customer.updated` with the mapped fields of the
  record's current state (v2 `data`, v1 `current`); the customer is created when it does not exist
  yet and the name is mapped;
- v2 `delete`, v1 `deleted`: `customer.deleted`, the id taken from `previous` or the meta's id;
- a merge: v1 `merged` (`current` is the record kept, its `merge_what_id` the one merged away), v2
  `delete` with `meta.merged_to_id` (the merged-away record, naming the one kept):
  `customer.merged` (when the external id is the record's `id`);
- for an erasure entity (action `erasure`): its creation becomes `customer.erasure_requested`; its
  later changes and deletion are ignored.
Ordering uses v2 `meta.timestamp` (ISO 8601, or unix seconds as 10 digits), v1 `meta.timestamp_micro`
/ `timestamp_milli` / `timestamp`. The delivery id is v2 `meta.id`; v1 has none, so it joins the
meta's ids and timestamps (not `retry`, which counts redeliveries). A body that is neither is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from crmsync.core.events import CUSTOMER_DELETED, CUSTOMER_MERGED
from crmsync.core.parsing import ascii_int, utc_isoformat

from ..mappings import ERASURE, RecordMapping, field_value
from .items import (
    AuthenticationFailed,
    IgnoredItem,
    InboundRequest,
    InvalidItem,
    MappedEvent,
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
    """Map a Pipedrive body (webhooks v2, or v1) to one crmsync event, an ignored or a rejected item;
    UnparseableBody when it is neither (a 400: Pipedrive shows the failure and retries)."""
    payload = json_body(body)
    if not isinstance(payload, dict):
        raise UnparseableBody("Pipedrive sends a JSON object.")
    meta = payload.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("entity"), str):
        return _read_v2(payload, meta, mappings)
    if isinstance(meta, dict) and isinstance(meta.get("object"), str):
        return _read_v1(payload, meta, mappings)
    raise UnparseableBody("not a Pipedrive webhooks v1 or v2 body (no meta.entity, no meta.object)")


def _read_v2(
    payload: dict[str, Any], meta: dict[str, Any], mappings: Mapping[str, RecordMapping]
) -> SourceBatch:
    batch = SourceBatch(NAME)
    entity, action = meta["entity"], str(meta.get("action", ""))
    mapping = mappings.get(entity)
    if mapping is None or (mapping.action == ERASURE and action != "create"):
        batch.ignored.append(IgnoredItem(f"{entity}.{action}"))
        return batch
    with item_isolation(batch, lambda: _identifiers(meta), lambda: f"{entity}.{action}"):
        delivery_id = f"{NAME}:{_required_text(meta, 'id')}"
        batch.events.append(MappedEvent(delivery_id, _event(action, meta, payload, mapping)))
    return batch


def _read_v1(
    payload: dict[str, Any], meta: dict[str, Any], mappings: Mapping[str, RecordMapping]
) -> SourceBatch:
    """Webhooks v1: `meta.object` / `meta.action` (added, updated, deleted, merged), the record in
    `current` (null on delete) and `previous`; the same mapping (dotted paths) as v2."""
    batch = SourceBatch(NAME)
    entity, action = meta["object"], str(meta.get("action", ""))
    mapping = mappings.get(entity)
    if mapping is None or (mapping.action == ERASURE and action != "added"):
        batch.ignored.append(IgnoredItem(f"{entity}.{action}"))
        return batch
    with item_isolation(batch, lambda: _identifiers(meta), lambda: f"{entity}.{action}"):
        event = _v1_event(action, meta, payload, mapping, _v1_timestamp(meta))
        batch.events.append(MappedEvent(_v1_delivery_id(meta, entity, action), event))
    return batch


def _v1_event(
    action: str, meta: dict[str, Any], payload: dict[str, Any], mapping: RecordMapping, timestamp: str
) -> dict[str, Any]:
    current, previous = _object(payload.get("current")), _object(payload.get("previous"))
    if action in ("added", "updated"):
        if not current:
            raise InvalidItem(f"{action} without current")
        return record_event(mapping, current, _v1_external_id(current, meta, mapping), timestamp)
    if action == "deleted":
        external_id = _v1_external_id(previous, meta, mapping)
        return validated_event(CUSTOMER_DELETED, timestamp, {"external_id": external_id})
    if action == "merged":
        # `current` is the record merged into (`merge_what_id` names the other), `previous` the other.
        survivor = _v1_external_id(current, meta, mapping)
        merged = current.get("merge_what_id") if mapping.external_id == "id" else None
        if merged in (None, ""):
            merged = field_value(previous, mapping.external_id)[1]
        merged_id = mapping.external_id_prefix + _text(merged, "merge_what_id")
        data = {"external_id": survivor, "merged_ids": [merged_id]}
        return validated_event(CUSTOMER_MERGED, timestamp, data)
    raise InvalidItem(f"unknown meta.action for {meta['object']}")


def _v1_external_id(record: dict[str, Any], meta: dict[str, Any], mapping: RecordMapping) -> str:
    """The record's external id; v1's `meta.id` is the object's id, used when the record lacks it."""
    found, record_id = field_value(record, mapping.external_id)
    if (not found or record_id in (None, "")) and mapping.external_id == "id":
        record_id = meta.get("id")
    return mapping.external_id_prefix + _text(record_id, mapping.external_id)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# v1 has no event id: these identify one change, and stay the same when Pipedrive retries it (the
# top-level `retry` counts the attempts, so it is left out).
_V1_DELIVERY_PARTS = ("company_id", "webhook_id", "id", "timestamp_micro", "timestamp_milli", "timestamp")


def _v1_delivery_id(meta: dict[str, Any], entity: str, action: str) -> str:
    parts = [str(meta[key]) for key in _V1_DELIVERY_PARTS if isinstance(meta.get(key), int | str)]
    return ":".join([NAME, "v1", f"{entity}.{action}", *parts])


def _v1_timestamp(meta: dict[str, Any]) -> str:
    """v1's clock: `timestamp_micro` (16 digits) or `timestamp_milli` (13), else `timestamp` (seconds)."""
    for key, digits in (("timestamp_micro", 16), ("timestamp_milli", 13)):
        value = meta.get(key)
        text = "" if value is None or isinstance(value, bool) else str(value).strip()
        if text.isascii() and text.isdigit() and len(text) == digits:
            seconds = _timestamp(text[:10])
            return seconds.replace(".000000+", f".{text[10:]:0<6}+")
    return _timestamp(meta.get("timestamp"))


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
        merged_to = meta.get("merged_to_id")
        if merged_to not in (None, "") and mapping.external_id == "id":
            # A merge: v2 sends this delete of the merged-away record, naming the one it went into.
            survivor = mapping.external_id_prefix + _text(merged_to, "meta.merged_to_id")
            data = {"external_id": survivor, "merged_ids": [external_id]}
            return validated_event(CUSTOMER_MERGED, timestamp, data)
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
    keys = ("id", "entity", "object", "action", "entity_id", "company_id", "webhook_id", "merged_to_id")
    return {key: str(meta[key]) for key in keys if key in meta and not isinstance(meta[key], dict | list)}
