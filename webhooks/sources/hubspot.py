"""HubSpot app webhooks: signature v3 (v1/v2 when allowed), a JSON array of events, one per change.

Two formats, mapped alike: the legacy one (`company.propertyChange`) and the generic one (since
2024: `object.propertyChange` with `"objectTypeId": "0-2"`); an older key, `eventType`, is taken for
`subscriptionType`. An event of the mapped object (`company` ≡ `0-2`, or any type id such as a
custom object's `2-12345`) becomes at most one crmsync event:
- `*.propertyChange` of a mapped property: `customer.updated` writing that one field (the customer
  is created when the change carries its name and it does not exist yet);
- `*.deletion`: `customer.deleted`;
- `*.merge`: `customer.merged`, the survivor being `newObjectId` when HubSpot made a new record,
  else `primaryObjectId`; the primary (when it is not the survivor) then `mergedObjectIds` are
  merged into it;
- `*.creation` (it carries no property: the name's propertyChange creates the customer),
  `*.restore` (it carries no property either: the next change of the name re-creates the
  customer), association changes, other objects (`contact.*`, `object.* of 0-1`): ignored, counted.
Ordering uses `occurredAt`. The delivery id joins the event's ids: HubSpot does not promise that
`eventId` alone is unique.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

from marshmallow import fields, validate

from crmsync.core.events import CUSTOMER_DELETED, CUSTOMER_MERGED, CUSTOMER_UPDATED
from crmsync.core.parsing import ascii_int, from_unix_milliseconds, utc_isoformat
from crmsync.core.settings import flag_setting, secret_setting, url_setting

from .items import (
    AuthenticationFailed,
    IgnoredItem,
    InboundRequest,
    InvalidItem,
    MappedEvent,
    RejectedItem,
    SourceBatch,
    UnparseableBody,
    check_item_count,
    item_isolation,
    json_body,
    validated_event,
)
from .kind import JSON, EnvVar, JsonReplies, Sample
from .mapping_file import StrictSchema, load_table
from .record_mapping import customer_field_value

__all__ = [
    "NAME",
    "KIND",
    "HubSpotSettings",
    "HubSpotMapping",
    "HubSpotSource",
    "request_uri",
    "verify_signature",
    "read_events",
    "sign_v3",
    "same_object",
    "OBJECT_TYPE_IDS",
]

NAME = "hubspot"
SIGNATURE_V3 = "X-HubSpot-Signature-v3"
TIMESTAMP = "X-HubSpot-Request-Timestamp"
SIGNATURE_LEGACY = "X-HubSpot-Signature"
SIGNATURE_VERSION = "X-HubSpot-Signature-Version"
WINDOW_MS = 5 * 60 * 1000
# Unix milliseconds have 13 digits until the year 2286; more can only be a hostile header.
TIMESTAMP_MAX_DIGITS = 16
# HubSpot's v3 documentation decodes these in the URI before signing (only matters with a query string).
_DECODED = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B")
# The generic format's subscription types start with this; the object is then named by `objectTypeId`.
GENERIC = "object"
# HubSpot's type ids of its standard objects (custom objects are `2-<n>`): `company` and `0-2` are one.
OBJECT_TYPE_IDS = {"contact": "0-1", "company": "0-2", "deal": "0-3", "ticket": "0-5"}
# Stable across redeliveries (unlike attemptNumber); `eventId` alone is not promised unique.
_DELIVERY_ID_PARTS = ("portalId", "subscriptionId", "eventId", "objectId", "occurredAt")


@dataclass(frozen=True)
class HubSpotSettings:
    """The app's client secret; the public URL HubSpot calls when a proxy changes it; v1/v2 allowed."""

    client_secret: str = field(repr=False)
    webhook_url: str = ""
    allow_legacy: bool = False


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
            customer_field: customer_field_value(customer_field, [value])
            for customer_field, prop in self.fields.items()
            if prop == property_name
        }


class HubSpotSource(JsonReplies):
    """Verifies and maps requests from one HubSpot app."""

    name = NAME

    def __init__(
        self, client_secret: str, mapping: HubSpotMapping, webhook_url: str = "", allow_legacy: bool = False
    ) -> None:
        self._secret = client_secret
        self._mapping = mapping
        self._webhook_url = webhook_url
        self._allow_legacy = allow_legacy

    def authenticate(self, request: InboundRequest, now: float | None = None) -> None:
        """Raise AuthenticationFailed unless `request` carries a valid HubSpot signature."""
        uri = request_uri(request, self._webhook_url)
        verify_signature(request, self._secret, uri, self._allow_legacy, now)

    def read(self, body: bytes) -> SourceBatch:
        """Map an (authenticated) body; UnparseableBody if it is not a JSON array."""
        return read_events(body, self._mapping)

    def receive(self, request: InboundRequest) -> SourceBatch:
        self.authenticate(request)
        return self.read(request.body)


def request_uri(request: InboundRequest, webhook_url: str = "") -> str:
    """The URL HubSpot called: the configured public URL, else the request's own scheme (as the
    trusted proxy set it: crmsync/web/proxies.py), `Host` and target. A client's X-Forwarded-Host is
    never read: it would let a signature made for another URL pass."""
    if webhook_url:
        return webhook_url
    return f"{request.scheme}://{request.host}{request.target}"


def sign_v3(client_secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    """The v3 signature: base64 HMAC-SHA256 of method + URI + body + timestamp, with no separators."""
    content = method.encode() + uri.encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(client_secret.encode(), content, hashlib.sha256).digest()).decode()


def verify_signature(
    request: InboundRequest,
    client_secret: str,
    uri: str,
    allow_legacy: bool = False,
    now: float | None = None,
) -> None:
    """Check the request's signature headers; raise AuthenticationFailed naming what failed."""
    signature = request.header(SIGNATURE_V3)
    if signature:
        _verify_v3(request, client_secret, uri, signature, now)
        return
    legacy = request.header(SIGNATURE_LEGACY)
    if not legacy:
        raise AuthenticationFailed("missing_signature", f"missing required header {SIGNATURE_V3}")
    if not allow_legacy:
        raise AuthenticationFailed(
            "legacy_signature_refused",
            "v1/v2 signatures have no timestamp and are refused (HUBSPOT_ALLOW_LEGACY_SIGNATURES)",
        )
    version = request.header(SIGNATURE_VERSION) or "v1"
    if version == "v1":
        content = client_secret.encode() + request.body
    elif version == "v2":
        content = client_secret.encode() + request.method.encode() + uri.encode() + request.body
    else:
        raise AuthenticationFailed("unknown_signature_version", f"{SIGNATURE_VERSION} must be v1 or v2")
    expected = hashlib.sha256(content).hexdigest()
    if not hmac.compare_digest(expected.encode(), legacy.lower().encode()):
        raise AuthenticationFailed("invalid_signature", f"{SIGNATURE_LEGACY} does not match the body")


def _verify_v3(request: InboundRequest, secret: str, uri: str, signature: str, now: float | None) -> None:
    raw_timestamp = request.header(TIMESTAMP)
    if not raw_timestamp:
        raise AuthenticationFailed("missing_header", f"missing required header {TIMESTAMP}")
    timestamp_ms = ascii_int(raw_timestamp, TIMESTAMP_MAX_DIGITS)
    if timestamp_ms is None:
        raise AuthenticationFailed("malformed_timestamp", f"{TIMESTAMP} must be unix milliseconds")
    current_ms = int((time.time() if now is None else now) * 1000)
    if abs(current_ms - timestamp_ms) > WINDOW_MS:
        raise AuthenticationFailed(
            "timestamp_out_of_tolerance", f"{TIMESTAMP} is more than 5 minutes away from the server's clock"
        )
    matched = False
    # Every candidate URI is compared, without an early exit, so timing reveals nothing.
    for candidate in dict.fromkeys([uri, _decoded(uri)]):
        expected = sign_v3(secret, request.method, candidate, request.body, timestamp_ms)
        matched |= hmac.compare_digest(expected.encode(), signature.encode())
    if not matched:
        raise AuthenticationFailed("invalid_signature", f"{SIGNATURE_V3} does not match the request")


def _decoded(uri: str) -> str:
    for escape in _DECODED:
        uri = uri.replace(escape, unquote(escape)).replace(escape.lower(), unquote(escape))
    return uri


def read_events(body: bytes, mapping: HubSpotMapping) -> SourceBatch:
    """Map every event of a HubSpot body (a JSON array) to a crmsync event, an ignored or a rejected item."""
    items = json_body(body)
    if not isinstance(items, list):
        raise UnparseableBody("HubSpot sends a JSON array of events.")
    check_item_count(len(items))
    batch = SourceBatch(NAME)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            batch.rejected.append(RejectedItem("an event must be a JSON object", {"index": str(index)}))
            continue
        with item_isolation(batch, lambda: _identifiers(item, index), lambda: _item_type(item)):  # noqa: B023
            _map_event(item, mapping, batch)
    return batch


def _map_event(item: dict[str, Any], mapping: HubSpotMapping, batch: SourceBatch) -> None:
    subscription = _subscription(item)
    if not isinstance(subscription, str) or "." not in subscription:
        raise InvalidItem("missing or invalid subscriptionType")
    object_type, _, change = subscription.partition(".")
    if object_type == GENERIC:
        # The generic format names the object by its type id: `object.propertyChange` of `0-2`.
        type_id = item.get("objectTypeId")
        if not isinstance(type_id, str) or not type_id:
            raise InvalidItem("missing or invalid objectTypeId")
        object_type = type_id
    if not same_object(object_type, mapping.object) or change not in ("propertyChange", "deletion", "merge"):
        batch.ignored.append(IgnoredItem(_item_type(item)))
        return
    delivery_id = ":".join([NAME, *(str(_id(item, key)) for key in _DELIVERY_ID_PARTS)])
    timestamp = _timestamp(_id(item, "occurredAt"))
    external_id = mapping.external_id_prefix + str(_id(item, "objectId"))
    if change == "deletion":
        event = validated_event(CUSTOMER_DELETED, timestamp, {"external_id": external_id})
        batch.events.append(MappedEvent(delivery_id, event))
    elif change == "merge":
        survivor, merged_ids = _merge(item)
        if not merged_ids:
            batch.ignored.append(IgnoredItem(_item_type(item), "nothing merged away"))
            return
        prefix = mapping.external_id_prefix
        data = {"external_id": prefix + str(survivor), "merged_ids": [prefix + str(m) for m in merged_ids]}
        batch.events.append(MappedEvent(delivery_id, validated_event(CUSTOMER_MERGED, timestamp, data)))
    else:
        property_name = item.get("propertyName")
        if not isinstance(property_name, str) or not property_name:
            raise InvalidItem("missing propertyName")
        data = mapping.customer_data(property_name, item.get("propertyValue"))
        if not data:
            batch.ignored.append(IgnoredItem(_item_type(item), f"property {property_name}"))
            return
        event = validated_event(CUSTOMER_UPDATED, timestamp, {"external_id": external_id, **data})
        batch.events.append(MappedEvent(delivery_id, event))


def same_object(object_type: str, mapped: str) -> bool:
    """Whether events of `object_type` (a name or a type id such as `0-2`) are the mapped object's."""
    return OBJECT_TYPE_IDS.get(object_type, object_type) == OBJECT_TYPE_IDS.get(mapped, mapped)


def _subscription(item: dict[str, Any]) -> Any:
    """The event's subscription type; older payloads name it `eventType`."""
    return item["subscriptionType"] if "subscriptionType" in item else item.get("eventType")


def _item_type(item: dict[str, Any]) -> str:
    """What the event claims to be, for the counts: `company.creation`, `object.creation/0-1`."""
    subscription = _subscription(item)
    if not isinstance(subscription, str) or not subscription:
        return "unknown"
    type_id = item.get("objectTypeId")
    if subscription.startswith(f"{GENERIC}.") and isinstance(type_id, str) and type_id:
        return f"{subscription}/{type_id}"
    return subscription


def _merge(item: dict[str, Any]) -> tuple[int, list[int]]:
    """The record that survives a merge (`newObjectId` when HubSpot made a new one, else the primary)
    and those merged into it, in order of preference: the primary when it is not the survivor, then
    `mergedObjectIds` as HubSpot lists them."""
    primary = _id(item, "primaryObjectId")
    survivor = _id(item, "newObjectId") if item.get("newObjectId") is not None else primary
    merged = item.get("mergedObjectIds")
    if not isinstance(merged, list) or not all(_is_id(value) for value in merged):
        raise InvalidItem("missing or invalid mergedObjectIds")
    candidates = [primary, *(int(value) for value in merged)]
    return survivor, [value for value in dict.fromkeys(candidates) if value != survivor]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _id(item: dict[str, Any], key: str) -> int:
    value = item.get(key)
    if not _is_id(value):
        raise InvalidItem(f"missing or invalid {key}")
    return int(value)  # type: ignore[arg-type]


def _timestamp(milliseconds: int) -> str:
    try:
        return utc_isoformat(from_unix_milliseconds(milliseconds))
    except ValueError as exc:
        raise InvalidItem(f"occurredAt is {exc}") from None


def _identifiers(item: dict[str, Any], index: int) -> dict[str, str]:
    """Ids of a rejected event, for the operator: never `propertyValue`."""
    keys = ("eventId", "subscriptionType", "eventType", "objectTypeId", "portalId", "objectId",
            "propertyName", "occurredAt")  # fmt: skip
    return {"index": str(index), **{key: str(item[key]) for key in keys if key in item}}


# --- the registry's kind: settings, the [hubspot] table, the sample ---------------------------------


class OneProperty(fields.String):
    """A single property name, where the CRM sends one property per event."""

    default_error_messages = {
        "invalid": "HubSpot sends one property per event: name one property, not a list",
    }


class HubSpotFields(StrictSchema):
    name = OneProperty(validate=validate.Length(min=1))
    description = OneProperty(validate=validate.Length(min=1))
    labels = OneProperty(validate=validate.Length(min=1))


class HubSpotSchema(StrictSchema):
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


_SCHEMA = HubSpotSchema()


class HubSpotKind:
    """HubSpot in the registry."""

    name = NAME
    title = "HubSpot"
    env_vars = (
        EnvVar("HUBSPOT_CLIENT_SECRET", "The HubSpot app's client secret: enables /webhooks/hubspot"),
        EnvVar("HUBSPOT_WEBHOOK_URL", "The public URL HubSpot calls, when a proxy rewrites it (signed)"),
        EnvVar("HUBSPOT_ALLOW_LEGACY_SIGNATURES", "Accept v1/v2 signatures, which have no timestamp"),
    )
    enabled_by = ("HUBSPOT_CLIENT_SECRET",)
    default_mapping = HubSpotMapping(fields={"name": "name", "description": "description"})
    sample_id = "1001"
    sample_name = "Jupiter Freight"
    version_fix = "send the record's last-modified time"

    def settings_from_env(self, env: Mapping[str, str]) -> HubSpotSettings | None:
        secret = secret_setting(env, "HUBSPOT_CLIENT_SECRET")
        url = url_setting(env, "HUBSPOT_WEBHOOK_URL")
        legacy = flag_setting(env, "HUBSPOT_ALLOW_LEGACY_SIGNATURES")
        return HubSpotSettings(secret, url, legacy) if secret else None

    def load_mapping(self, table: Any, errors: list[str]) -> HubSpotMapping:
        loaded = load_table(_SCHEMA, table, NAME, errors)
        if loaded is None:
            return self.default_mapping
        return HubSpotMapping(loaded["customer_fields"], loaded["object"], loaded["external_id_prefix"])

    def describe_mapping(self, mapping: HubSpotMapping) -> Any:
        return asdict(mapping)

    def mapping_lines(self, mapping: HubSpotMapping) -> list[str]:
        type_id = OBJECT_TYPE_IDS.get(mapping.object, mapping.object)
        named = f"{mapping.object}.* and " if mapping.object != type_id else ""
        prefix = f' (prefixed "{mapping.external_id_prefix}")' if mapping.external_id_prefix else ""
        heading = f"\n{NAME}: {named}object.* events of {type_id}, external id = objectId{prefix}"
        return [heading, *(f"  {field:<12} <- property {prop}" for field, prop in mapping.fields.items())]

    def id_prefixes(self, mapping: HubSpotMapping) -> set[str]:
        return {mapping.external_id_prefix}

    def build(self, settings: HubSpotSettings, mapping: HubSpotMapping) -> HubSpotSource:
        return HubSpotSource(settings.client_secret, mapping, settings.webhook_url, settings.allow_legacy)

    def read_payload(self, body: bytes, mapping: HubSpotMapping) -> SourceBatch:
        return read_events(body, mapping)

    def dev_env(self) -> dict[str, str]:
        return {"HUBSPOT_CLIENT_SECRET": secrets.token_urlsafe(24)}

    def sample(self, env: Mapping[str, str], url: str, external_id: str, name: str) -> Sample:
        settings = self.settings_from_env(env)
        if settings is None:
            raise ValueError("set HUBSPOT_CLIENT_SECRET to what the service verifies hubspot webhooks with")
        if ascii_int(external_id, 20) is None:
            raise ValueError(f"a hubspot record id is a number, got {external_id!r}")
        return Sample(*signed_request(url, settings.client_secret, sample_events(int(external_id), name)))


def signed_request(
    url: str, client_secret: str, events: list[dict[str, Any]], timestamp_ms: int | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a HubSpot delivery of `events`, signed v3 for `url` as HubSpot signs it."""
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    body = json.dumps(events, separators=(",", ":")).encode()
    headers = {
        "content-type": JSON,
        "x-hubspot-signature-v3": sign_v3(client_secret, "POST", url, body, timestamp_ms),
        "x-hubspot-request-timestamp": str(timestamp_ms),
    }
    return headers, body


def sample_events(object_id: int = 1001, name: str = "Mars Missions") -> list[dict[str, Any]]:
    """A company's creation and its name's propertyChange, as one HubSpot batch."""
    now_ms = int(time.time() * 1000)
    event_id = now_ms % 1_000_000_000
    common = {"subscriptionId": 1, "portalId": 1, "appId": 1, "occurredAt": now_ms, "attemptNumber": 0,
              "objectId": object_id, "changeSource": "CRM"}  # fmt: skip
    return [
        {"eventId": event_id, "subscriptionType": "company.creation", "changeFlag": "NEW", **common},
        {"eventId": event_id + 1, "subscriptionType": "company.propertyChange", "propertyName": "name",
         "propertyValue": name, **common},
    ]  # fmt: skip


KIND = HubSpotKind()
