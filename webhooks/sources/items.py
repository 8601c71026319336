"""What a CRM request becomes: mapped events, ignored items and rejected items, and why a request fails.

A source (one module per CRM) verifies a request, parses its body and maps each item of the batch to
exactly one of: a crmsync event in the standard validated shape (with its delivery id), an ignored
item (a type, property or record the mappings do not use: acknowledged and counted), or a rejected
item (it should have been mapped but cannot be: kept with a reason and identifiers, never values).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from crmsync.core.events import CUSTOMER_UPDATED, ERASURE_REQUESTED

from ..decoding import MalformedJSON, decode_json
from ..schemas import load_event
from .record_mapping import ERASURE, RecordMapping, field_value, purchase_ids_from

__all__ = [
    "InboundRequest",
    "MappedEvent",
    "IgnoredItem",
    "RejectedItem",
    "SourceBatch",
    "SourceError",
    "AuthenticationFailed",
    "UnparseableBody",
    "InvalidItem",
    "TooManyItems",
    "MAX_ITEMS_PER_REQUEST",
    "check_item_count",
    "item_isolation",
    "json_body",
    "validated_event",
    "record_event",
]

# HubSpot sends at most 100 events a request, Salesforce at most 100 notifications, Pipedrive one:
# ten times that is headroom, and bounds what one request costs (a 256 KB body holds 100,000 `0,`).
MAX_ITEMS_PER_REQUEST = 1000
# An identifier of a rejected item is kept for the operator, cut to this length (a sender chooses it).
MAX_IDENTIFIER_CHARS = 64


@dataclass(frozen=True)
class InboundRequest:
    """What a source needs of an HTTP request, free of the web framework (so it is tested as data).

    `headers` looks names up case-insensitively (werkzeug's Headers; tests give lower-case names).
    `target` is the path and query string exactly as the client sent them.
    """

    method: str
    scheme: str
    host: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return (self.headers.get(name) or self.headers.get(name.lower()) or "").strip()


@dataclass(frozen=True)
class MappedEvent:
    """One crmsync event `{type, timestamp, data}` (validated) and the delivery id that de-duplicates it."""

    delivery_id: str
    event: dict[str, Any]


@dataclass(frozen=True)
class IgnoredItem:
    """An item the mappings do not use, e.g. type `contact.creation` or `company.propertyChange`."""

    type: str
    detail: str = ""


@dataclass(frozen=True)
class RejectedItem:
    """An item that should have been mapped but cannot be: why, and ids only (never a value).
    `type` is what the item claimed to be (e.g. `company.propertyChange`, `organization.merged`,
    `Account`), or `unknown`: it labels the rejected counts, which are never left without a type."""

    reason: str
    identifiers: dict[str, str]
    type: str = "unknown"


@dataclass
class SourceBatch:
    """Every item of one request, each in exactly one of the three lists. `version_fallbacks` names,
    per mapped event that lacked its version field, what stood in for it (e.g.
    `Account:SystemModstamp`, `Account:received_at`): counted, so operators see the fix to make."""

    source: str
    events: list[MappedEvent] = field(default_factory=list)
    ignored: list[IgnoredItem] = field(default_factory=list)
    rejected: list[RejectedItem] = field(default_factory=list)
    version_fallbacks: list[str] = field(default_factory=list)
    # The first error no check foresaw while reading an item (a bug): logged once per request.
    unexpected_error: Exception | None = None

    def ignored_by_type(self) -> Counter[str]:
        return Counter(item.type for item in self.ignored)

    def rejected_by_type(self) -> Counter[str]:
        return Counter(item.type or "unknown" for item in self.rejected)

    def reject(
        self,
        reason: str,
        identifiers: Callable[[], dict[str, str]],
        item_type: Callable[[], str] | None = None,
    ) -> None:
        """Keep an item as rejected, with its identifiers and type cut short (they come from the sender)."""
        try:
            ids = {key: value[:MAX_IDENTIFIER_CHARS] for key, value in identifiers().items()}
        except Exception:  # the item is so odd its ids cannot be read: it is still counted
            ids = {}
        try:
            claimed = (item_type() if item_type else "")[:MAX_IDENTIFIER_CHARS] or "unknown"
        except Exception:  # likewise: counted as of an unknown type
            claimed = "unknown"
        self.rejected.append(RejectedItem(reason, ids, claimed))


class SourceError(Exception):
    """A request from a CRM cannot be taken as a whole: answered `status`, nothing recorded."""

    reason = "source_error"
    status = 400

    @property
    def details(self) -> dict[str, Any]:
        """What the error answer carries besides its reason and message."""
        return {}


class AuthenticationFailed(SourceError):
    """The request does not prove it comes from the configured CRM account (answered 401)."""

    reason = "authentication_failed"
    status = 401

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnparseableBody(SourceError):
    """The body cannot be read at all (answered 400); an item that is merely invalid is rejected alone."""

    reason = "unparseable_body"


class TooManyItems(SourceError):
    """The request holds more items than any CRM sends in one (answered 413, nothing recorded)."""

    reason = "too_many_items"
    status = 413


class InvalidItem(Exception):
    """One item of a batch cannot be mapped; becomes a RejectedItem with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_item_count(count: int) -> None:
    """TooManyItems when a request holds more than MAX_ITEMS_PER_REQUEST items."""
    if count > MAX_ITEMS_PER_REQUEST:
        raise TooManyItems(
            f"The request holds {count:,} items; at most {MAX_ITEMS_PER_REQUEST:,} are taken in one request."
        )


@contextmanager
def item_isolation(
    batch: SourceBatch, identifiers: Callable[[], dict[str, str]], item_type: Callable[[], str] | None = None
) -> Iterator[None]:
    """Read one item of `batch` inside this block: whatever goes wrong rejects that item alone.

    An InvalidItem is rejected with its reason. Any other exception is the documented boundary where
    one item never fails its batch: a 500 would make the CRM redeliver the whole batch until it gives
    up (HubSpot after 24 h, Salesforce too), and its good items would never land. It is rejected as
    `unreadable item (<error type>)`, and the first such error of a request is kept for its one log
    line with the traceback."""
    try:
        yield
    except InvalidItem as exc:
        batch.reject(exc.reason, identifiers, item_type)
    except Exception as exc:
        batch.reject(f"unreadable item ({type(exc).__name__})", identifiers, item_type)
        if batch.unexpected_error is None:
            batch.unexpected_error = exc


def json_body(body: bytes) -> Any:
    """The JSON value of a CRM's body (HubSpot, Pipedrive); UnparseableBody if it is not JSON text in
    UTF-8, with the reason (webhooks/decoding.py)."""
    try:
        return decode_json(body)
    except MalformedJSON as exc:
        raise UnparseableBody(str(exc)) from None


def validated_event(event_type: str, timestamp: str, data: dict[str, Any]) -> dict[str, Any]:
    """The event in the standard contract's validated shape; InvalidItem names the fields (no values)."""
    try:
        return load_event({"type": event_type, "timestamp": timestamp, "data": data})
    except ValidationError as err:
        raise InvalidItem("invalid event: " + "; ".join(_flatten(err.messages))) from err


def record_event(
    mapping: RecordMapping, record: Mapping[str, Any], external_id: str, timestamp: str
) -> dict[str, Any]:
    """What a record of a mapped type becomes (Salesforce, Pipedrive): a GDPR erasure request when
    its type's action is `erasure`, else an update of the customer with the mapped fields it carries."""
    if mapping.action == ERASURE:
        try:
            purchase_ids = purchase_ids_from(field_value(record, mapping.purchase_ids)[1])
        except ValueError as exc:
            raise InvalidItem(f"{mapping.purchase_ids}: {exc}") from None
        data = {"external_id": external_id, "purchase_ids": purchase_ids}
        return validated_event(ERASURE_REQUESTED, timestamp, data)
    data = {"external_id": external_id, **mapping.customer_data(record)}
    return validated_event(CUSTOMER_UPDATED, timestamp, data)


def _flatten(messages: Any, path: str = "") -> list[str]:
    if isinstance(messages, dict):
        return [line for key, value in messages.items() for line in _flatten(value, f"{path}{key}.")]
    if isinstance(messages, list) and all(isinstance(item, str) for item in messages):
        return [f"{path.rstrip('.')}: {' '.join(messages)}"]
    if isinstance(messages, list):
        return [line for item in messages for line in _flatten(item, path)]
    return [f"{path.rstrip('.')}: {messages}"]
