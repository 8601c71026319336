"""Salesforce Outbound Messages: a SOAP message of up to 100 notifications, each one record's fields.

Salesforce signs nothing: a request is authentic when its `?token=` matches (constant time) and its
`OrganizationId` is one of the configured organizations (15- and 18-character forms both match).
XML from the network is parsed with defusedxml, DTDs forbidden: an entity bomb or an external entity
is refused at once, before any expansion. The answer is the SOAP `<Ack>true</Ack>`, which acknowledges
every notification of the message; a body that cannot be read gets a SOAP fault.

Each notification is mapped by its sObject type (`[salesforce.<type>]`): a synced record becomes
`customer.updated` with the mapped fields it carries (`customer.deleted` when the `deleted` checkbox
is true; `customer.merged` into its `MasterRecordId` when it also carries one: a merge's loser); an
erasure record becomes `customer.erasure_requested`. Ids are kept in their 18-character form.
Ordering uses the mapped `version` date field (default `LastModifiedDate`), else `SystemModstamp`,
else the time of receipt (counted: the message should include the field); the delivery id is the
notification `Id`, stable across retries.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from marshmallow import fields, validate, validates_schema

from crmsync.core.events import CUSTOMER_DELETED, CUSTOMER_MERGED
from crmsync.core.parsing import utc_isoformat
from crmsync.core.salesforce_ids import salesforce_id_18
from crmsync.core.settings import SettingsError, require_together, secret_setting

from .items import (
    AuthenticationFailed,
    IgnoredItem,
    InboundRequest,
    InvalidItem,
    MappedEvent,
    SourceBatch,
    UnparseableBody,
    check_item_count,
    item_isolation,
    record_event,
    validated_event,
)
from .kind import Acceptance, EnvVar, Reply, Sample, batch_summary
from .mapping_file import StrictSchema
from .record_mapping import (
    ERASURE,
    SYNC,
    RecordFields,
    RecordMapping,
    RecordMappingKind,
    check_action,
    record_mappings,
)

__all__ = [
    "NAME",
    "KIND",
    "SalesforceSettings",
    "SalesforceSource",
    "OutboundMessage",
    "Notification",
    "parse_message",
    "read_message",
    "verify_token",
    "verify_organization",
    "ACK_RESPONSE",
    "soap_fault",
]

NAME = "salesforce"
# A merge's losers arrive deleted, with this field (when the message includes it) naming the survivor.
MASTER_RECORD_ID = "MasterRecordId"
# The version when the mapped version field is missing: the system's modification stamp, then receipt.
SYSTEM_MODSTAMP = "SystemModstamp"
RECEIVED_AT = "received_at"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_TYPE = "text/xml; charset=utf-8"

ACK_RESPONSE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
).encode()


def soap_fault(message: str, server_side: bool = False) -> bytes:
    """A SOAP 1.1 fault body: `Client` when the message is at fault, `Server` when we are (retry later)."""
    code = "soapenv:Server" if server_side else "soapenv:Client"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{escape(message)}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    ).encode()


@dataclass(frozen=True)
class Notification:
    """One record of a message: its notification id, sObject type and fields (None for `xsi:nil`)."""

    id: str
    sobject_type: str
    fields: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class InvalidNotification:
    """A notification whose XML is not a record (no Id, no sObject): rejected on its own."""

    reason: str
    id: str = ""


@dataclass(frozen=True)
class OutboundMessage:
    """A parsed message: the sending organization and its notifications, in order."""

    organization_id: str
    notifications: list[Notification | InvalidNotification]


@dataclass(frozen=True)
class SalesforceSettings:
    """The organizations whose messages are taken, and the token their URL carries (`?token=`)."""

    organization_ids: tuple[str, ...]
    token: str = field(repr=False)


class SalesforceSource:
    """Verifies and maps Outbound Messages from the configured organizations. Salesforce reads SOAP
    answers only: the Ack, or a fault for an error (`Server` when we are at fault: it retries)."""

    name = NAME
    media_type = ""
    counts_refusals = False

    def __init__(
        self, token: str, organization_ids: Iterable[str], mappings: Mapping[str, RecordMapping]
    ) -> None:
        self._token = token
        self._organizations = tuple(organization_ids)
        self._mappings = mappings

    def authenticate(self, request: InboundRequest) -> None:
        """The URL's token; the organization is checked once the body is parsed (see `read`)."""
        verify_token(request.query.get("token", ""), self._token)

    def read(self, body: bytes, check_organization: bool = True) -> SourceBatch:
        """Parse and map a message; AuthenticationFailed if it comes from another organization."""
        message = parse_message(body)
        if check_organization:
            verify_organization(message.organization_id, self._organizations)
        return read_message(message, self._mappings)

    def receive(self, request: InboundRequest) -> SourceBatch:
        self.authenticate(request)
        return self.read(request.body)

    def accepted(self, batch: SourceBatch, outcomes: Sequence[Acceptance]) -> Reply:
        return Reply(200, ACK_RESPONSE, CONTENT_TYPE)

    def refused(self, status: int, reason: str, message: str, details: Mapping[str, Any]) -> Reply | None:
        return Reply(status, soap_fault(message, server_side=status >= 500), CONTENT_TYPE)

    def receipt(self, batch: SourceBatch, outcomes: Sequence[Acceptance]) -> tuple[str, dict[str, Any]]:
        return "webhook batch", {"event": "webhook_batch", "source": NAME, **batch_summary(batch, outcomes)}


def verify_token(given: str, expected: str) -> None:
    if not given:
        raise AuthenticationFailed("missing_token", "the URL has no token query parameter")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise AuthenticationFailed("invalid_token", "the URL's token does not match")


def verify_organization(organization_id: str, allowed: Iterable[str]) -> None:
    """The message's organization must be a configured one; the 18-character form of an id is the
    15-character one plus a case-safe suffix, so both compare on their first 15 characters."""
    if len(organization_id) not in (15, 18):
        raise AuthenticationFailed("unknown_organization", "the message has no valid OrganizationId")
    matched = False
    for candidate in allowed:
        matched |= hmac.compare_digest(organization_id[:15].encode(), candidate[:15].encode())
    if not matched:
        raise AuthenticationFailed("unknown_organization", "the message's OrganizationId is not configured")


def parse_message(body: bytes) -> OutboundMessage:
    """Read a SOAP Outbound Message; UnparseableBody if it is not one (or holds a DTD or entities)."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise UnparseableBody("The message declares a DTD or entities, which are refused.") from None
    except ParseError:
        raise UnparseableBody("The body is not well-formed XML.") from None
    notifications = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}notifications")
    if root.tag != f"{{{SOAP_ENV}}}Envelope" or notifications is None:
        raise UnparseableBody("The body is not a SOAP Outbound Message (no notifications element).")
    organization_id = (notifications.findtext(f"{{{OUTBOUND}}}OrganizationId") or "").strip()
    elements = notifications.findall(f"{{{OUTBOUND}}}Notification")
    check_item_count(len(elements))
    items = [_notification(item) for item in elements]
    return OutboundMessage(organization_id, items)


def _notification(element: Element) -> Notification | InvalidNotification:
    notification_id = (element.findtext(f"{{{OUTBOUND}}}Id") or "").strip()
    if not notification_id:
        return InvalidNotification("notification without Id")
    sobject = element.find(f"{{{OUTBOUND}}}sObject")
    if sobject is None or len(sobject) == 0:
        # A record deleted before delivery arrives without its data.
        return InvalidNotification("notification without record data", notification_id)
    sobject_type = sobject.get(f"{{{XSI}}}type", "").rpartition(":")[2]
    if not sobject_type:
        return InvalidNotification("sObject without xsi:type", notification_id)
    values: dict[str, str | None] = {}
    for child in sobject:
        if len(child):
            continue  # A related record (e.g. sf:Owner): only the record's own fields are mapped.
        name = child.tag.rpartition("}")[2]
        values[name] = None if child.get(f"{{{XSI}}}nil") == "true" else (child.text or "")
    return Notification(notification_id, sobject_type, values)


def read_message(
    message: OutboundMessage, mappings: Mapping[str, RecordMapping], received_at: datetime | None = None
) -> SourceBatch:
    """Map each notification to a crmsync event, an ignored or a rejected item. `received_at` (now by
    default) versions a record that carries neither its version field nor SystemModstamp."""
    batch = SourceBatch(NAME)
    received_at = received_at or datetime.now(UTC)
    for index, notification in enumerate(message.notifications):
        if isinstance(notification, InvalidNotification):
            ids = {"index": str(index), "notification_id": notification.id}
            batch.reject(notification.reason, lambda: ids, lambda: "Notification")  # noqa: B023 (called at once)
            continue
        mapping = mappings.get(notification.sobject_type)
        if mapping is None:
            batch.ignored.append(IgnoredItem(notification.sobject_type))
            continue
        with item_isolation(
            batch,
            lambda: _identifiers(notification, index),  # noqa: B023 (called at once)
            lambda: notification.sobject_type,  # noqa: B023
        ):
            timestamp, fallback = _timestamp(notification.fields, mapping.version, received_at)
            batch.events.append(
                MappedEvent(f"{NAME}:{notification.id}", _event(notification, mapping, timestamp))
            )
            if fallback:
                batch.version_fallbacks.append(f"{notification.sobject_type}:{fallback}")
    return batch


def _event(notification: Notification, mapping: RecordMapping, timestamp: str) -> dict[str, Any]:
    record = notification.fields
    external_id = mapping.external_id_prefix + _record_id(record, mapping.external_id, "external id")
    deleted = mapping.deleted and (record.get(mapping.deleted) or "").strip().lower() == "true"
    if deleted and mapping.action != ERASURE:
        master = (record.get(MASTER_RECORD_ID) or "").strip()
        if master and mapping.external_id == "Id":
            # A merge: Salesforce deletes the losers, each pointing at the record it was merged into.
            survivor = mapping.external_id_prefix + salesforce_id_18(master)
            data = {"external_id": survivor, "merged_ids": [external_id]}
            return validated_event(CUSTOMER_MERGED, timestamp, data)
        return validated_event(CUSTOMER_DELETED, timestamp, {"external_id": external_id})
    return record_event(mapping, record, external_id, timestamp)


def _timestamp(record: Mapping[str, str | None], version: str, received_at: datetime) -> tuple[str, str]:
    """The record's version and, when the message leaves its version field out (the admin did not
    choose it), what stood in for it: the record's SystemModstamp (also a modification time), else
    the time of receipt. A version field sent empty or nil is no date: the record is rejected."""
    if version in record:
        return _version(_required(record, version, "version"), version), ""
    if SYSTEM_MODSTAMP in record:
        return _version(_required(record, SYSTEM_MODSTAMP, "version"), SYSTEM_MODSTAMP), SYSTEM_MODSTAMP
    return utc_isoformat(received_at), RECEIVED_AT


def _record_id(record: Mapping[str, str | None], name: str, role: str) -> str:
    """A record's id field, a Salesforce id in its 18-character form (other values as they are)."""
    return salesforce_id_18(_required(record, name, role))


def _required(record: Mapping[str, str | None], name: str, role: str) -> str:
    value = (record.get(name) or "").strip()
    if not value:
        raise InvalidItem(f"missing {role} field {name}")
    return value


def _version(value: str, name: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidItem(f"version field {name} is not a date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # A date field: Salesforce dates carry no zone.
    try:
        return utc_isoformat(moment)
    except ValueError as exc:
        raise InvalidItem(f"version field {name} is {exc}") from None


def _identifiers(notification: Notification, index: int) -> dict[str, str]:
    """Ids of a rejected notification: the record's id field, never another value."""
    ids = {"index": str(index), "notification_id": notification.id, "sobject": notification.sobject_type}
    record_id = notification.fields.get("Id") or ""
    if record_id:
        ids["record_id"] = salesforce_id_18(record_id)
    return ids


# --- the registry's kind: settings, the [salesforce.<sObject>] tables, the sample --------------------


class SalesforceObjectSchema(StrictSchema):
    action = fields.String(load_default=SYNC, validate=validate.OneOf([SYNC, ERASURE]))
    external_id = fields.String(required=True, validate=validate.Length(min=1))
    version = fields.String(load_default="LastModifiedDate", validate=validate.Length(min=1))
    deleted = fields.String(validate=validate.Length(min=1))
    purchase_ids = fields.String(validate=validate.Length(min=1))
    customer_fields = fields.Nested(RecordFields, data_key="fields", validate=validate.Length(min=1))

    @validates_schema
    def _action_needs(self, data: dict[str, Any], **kwargs: Any) -> None:
        check_action(data)


_SCHEMA = SalesforceObjectSchema()
_ORGANIZATION_ID = re.compile(r"00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?")


def _default_deleted(action: str) -> str:
    # Salesforce flags a deleted record with a checkbox.
    return "IsDeleted" if action == SYNC else ""


class SalesforceKind(RecordMappingKind):
    """Salesforce in the registry."""

    name = NAME
    title = "Salesforce"
    env_vars = (
        EnvVar("SALESFORCE_ORGANIZATION_IDS", "Organization ids (00D...) whose Outbound Messages are taken"),
        EnvVar("SALESFORCE_WEBHOOK_TOKEN", "The token the Outbound Message URL carries (?token=, 24+ chars)"),
    )
    enabled_by = ("SALESFORCE_ORGANIZATION_IDS", "SALESFORCE_WEBHOOK_TOKEN")
    default_mapping: Mapping[str, RecordMapping] = {
        "Account": RecordMapping(
            "Account",
            external_id="Id",
            fields={"name": ("Name",), "description": ("Description",)},
            version="LastModifiedDate",
            deleted="IsDeleted",
        )
    }
    sample_id = "001000000000001AAA"
    sample_name = "Saturn Rings Ltd"
    version_fix = "add LastModifiedDate to the outbound message's fields"

    def settings_from_env(self, env: Mapping[str, str]) -> SalesforceSettings | None:
        enabled = require_together(env, *self.enabled_by)
        ids = tuple(part for part in re.split(r"[\s,]+", env.get("SALESFORCE_ORGANIZATION_IDS", "")) if part)
        if not all(_ORGANIZATION_ID.fullmatch(org_id) for org_id in ids):
            raise SettingsError(
                "SALESFORCE_ORGANIZATION_IDS: each id must be a 15- or 18-character organization id (00D...)"
            )
        token = secret_setting(env, "SALESFORCE_WEBHOOK_TOKEN", min_length=24)
        return SalesforceSettings(ids, token) if enabled else None

    def load_mapping(self, table: Any, errors: list[str]) -> Mapping[str, RecordMapping]:
        return record_mappings(table, NAME, _SCHEMA, errors, _default_deleted)

    def build(self, settings: SalesforceSettings, mapping: Mapping[str, RecordMapping]) -> SalesforceSource:
        return SalesforceSource(settings.token, settings.organization_ids, mapping)

    def read_payload(self, body: bytes, mapping: Mapping[str, RecordMapping]) -> SourceBatch:
        return read_message(parse_message(body), mapping)

    def dev_env(self) -> dict[str, str]:
        # A made-up organization.
        return {
            "SALESFORCE_ORGANIZATION_IDS": "00D000000000001AAA",
            "SALESFORCE_WEBHOOK_TOKEN": secrets.token_urlsafe(24),
        }

    def sample(self, env: Mapping[str, str], url: str, external_id: str, name: str) -> Sample:
        settings = self.settings_from_env(env)
        if settings is None:
            raise ValueError(
                "set SALESFORCE_ORGANIZATION_IDS and SALESFORCE_WEBHOOK_TOKEN to what the service verifies "
                "salesforce webhooks with"
            )
        body = sample_message(settings.organization_ids[0], external_id, name)
        headers = {"content-type": CONTENT_TYPE, "SOAPAction": '""'}
        return Sample(headers, body, query={"token": settings.token})


def outbound_message(organization_id: str, notifications: list[tuple[str, str, dict[str, str]]]) -> bytes:
    """A SOAP Outbound Message: (notification id, sObject type, fields) for each notification."""
    items = []
    for notification_id, sobject_type, values in notifications:
        xml = "".join(f"<sf:{name}>{escape(value)}</sf:{name}>" for name, value in values.items())
        items.append(
            f'<Notification><Id>{notification_id}</Id><sObject xsi:type="sf:{sobject_type}" '
            f'xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{xml}</sObject></Notification>'
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:xsi="{XSI}"><soapenv:Body>'
        f'<notifications xmlns="{OUTBOUND}">'
        f"<OrganizationId>{organization_id}</OrganizationId><ActionId>04k000000000001AAA</ActionId>"
        '<SessionId xsi:nil="true"/>'
        f"{''.join(items)}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def sample_message(
    organization_id: str, record_id: str = "001000000000001AAA", name: str = "Mars Missions"
) -> bytes:
    """A message with one Account notification."""
    modified = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    values = {"Id": record_id, "LastModifiedDate": modified, "Name": name, "IsDeleted": "false"}
    return outbound_message(organization_id, [(f"04l{uuid.uuid4().hex[:15]}", "Account", values)])


KIND = SalesforceKind()
