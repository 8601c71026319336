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
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from marshmallow import fields, validate, validates_schema

from crmsync.core.events import CUSTOMER_DELETED, CUSTOMER_MERGED
from crmsync.core.parsing import ascii_int, utc_isoformat
from crmsync.core.settings import require_together, secret_setting

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
from .kind import JSON, EnvVar, JsonReplies, Sample
from .mapping_file import StrictSchema
from .record_mapping import (
    ERASURE,
    SYNC,
    RecordFields,
    RecordMapping,
    RecordMappingKind,
    check_action,
    field_value,
    record_mappings,
)

__all__ = [
    "NAME",
    "KIND",
    "PipedriveSettings",
    "PipedriveSource",
    "verify_basic_auth",
    "read_event",
    "basic_auth",
]

NAME = "pipedrive"


@dataclass(frozen=True)
class PipedriveSettings:
    """The HTTP Basic credentials the webhooks are set up with in Pipedrive."""

    user: str
    password: str = field(repr=False)


class PipedriveSource(JsonReplies):
    """Verifies and maps events from Pipedrive webhooks set up with HTTP Basic credentials."""

    name = NAME

    def __init__(self, user: str, password: str, mappings: Mapping[str, RecordMapping]) -> None:
        self._user = user
        self._password = password
        self._mappings = mappings

    def authenticate(self, request: InboundRequest) -> None:
        verify_basic_auth(request.header("Authorization"), self._user, self._password)

    def read(self, body: bytes) -> SourceBatch:
        return read_event(body, self._mappings)

    def receive(self, request: InboundRequest) -> SourceBatch:
        self.authenticate(request)
        return self.read(request.body)


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


# --- the registry's kind: settings, the [pipedrive.<entity>] tables, the sample ---------------------


class PipedriveEntitySchema(StrictSchema):
    action = fields.String(load_default=SYNC, validate=validate.OneOf([SYNC, ERASURE]))
    external_id = fields.String(load_default="id", validate=validate.Length(min=1))
    purchase_ids = fields.String(validate=validate.Length(min=1))
    customer_fields = fields.Nested(RecordFields, data_key="fields", validate=validate.Length(min=1))

    @validates_schema
    def _action_needs(self, data: dict[str, Any], **kwargs: Any) -> None:
        check_action(data)


_SCHEMA = PipedriveEntitySchema()


def _no_deleted_field(action: str) -> str:
    # Pipedrive sends a `delete` action, not a flag on the record.
    return ""


class PipedriveKind(RecordMappingKind):
    """Pipedrive in the registry."""

    name = NAME
    title = "Pipedrive"
    env_vars = (
        EnvVar("PIPEDRIVE_WEBHOOK_USER", "The HTTP Basic user the Pipedrive webhooks are set up with"),
        EnvVar("PIPEDRIVE_WEBHOOK_PASSWORD", "Their HTTP Basic password (12+ characters)"),
    )
    enabled_by = ("PIPEDRIVE_WEBHOOK_USER", "PIPEDRIVE_WEBHOOK_PASSWORD")
    default_mapping: Mapping[str, RecordMapping] = {
        "organization": RecordMapping("organization", external_id="id", fields={"name": ("name",)})
    }
    sample_id = "2001"
    sample_name = "Venus Ventures"
    version_fix = "send the record's last-modified time"

    def settings_from_env(self, env: Mapping[str, str]) -> PipedriveSettings | None:
        enabled = require_together(env, *self.enabled_by)
        password = secret_setting(env, "PIPEDRIVE_WEBHOOK_PASSWORD")
        return PipedriveSettings(env["PIPEDRIVE_WEBHOOK_USER"].strip(), password) if enabled else None

    def load_mapping(self, table: Any, errors: list[str]) -> Mapping[str, RecordMapping]:
        return record_mappings(table, NAME, _SCHEMA, errors, _no_deleted_field)

    def build(self, settings: PipedriveSettings, mapping: Mapping[str, RecordMapping]) -> PipedriveSource:
        return PipedriveSource(settings.user, settings.password, mapping)

    def read_payload(self, body: bytes, mapping: Mapping[str, RecordMapping]) -> SourceBatch:
        return read_event(body, mapping)

    def dev_env(self) -> dict[str, str]:
        return {"PIPEDRIVE_WEBHOOK_USER": "crmsync", "PIPEDRIVE_WEBHOOK_PASSWORD": secrets.token_urlsafe(24)}

    def sample(self, env: Mapping[str, str], url: str, external_id: str, name: str) -> Sample:
        settings = self.settings_from_env(env)
        if settings is None:
            raise ValueError(
                "set PIPEDRIVE_WEBHOOK_USER and PIPEDRIVE_WEBHOOK_PASSWORD to what the service verifies "
                "pipedrive webhooks with"
            )
        if ascii_int(external_id, 20) is None:
            raise ValueError(f"a pipedrive record id is a number, got {external_id!r}")
        body = v2_body("change", {"id": int(external_id), "name": name})
        headers = {"content-type": JSON, "authorization": basic_auth(settings.user, settings.password)}
        return Sample(headers, body)


def v2_body(action: str, data: dict[str, Any] | None, previous: dict[str, Any] | None = None,
            entity: str = "organization", **meta: Any) -> bytes:  # fmt: skip
    """A Pipedrive webhooks v2 body."""
    entity_id = (data or previous or {}).get("id")
    return json.dumps({
        "meta": {"action": action, "entity": entity, "entity_id": str(entity_id), "id": str(uuid.uuid4()),
                 "company_id": "1", "correlation_id": str(uuid.uuid4()), "is_bulk_edit": False,
                 "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "type": "general", "user_id": "1", "version": "2.0", "webhook_id": "1",
                 "webhook_owner_id": "1", "change_source": "app", "attempt": 1, **meta},
        "data": data,
        "previous": previous,
    }).encode()  # fmt: skip


def basic_auth(user: str, password: str) -> str:
    """An `Authorization: Basic` header's value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


KIND = PipedriveKind()
