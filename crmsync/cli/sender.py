"""Signing and sending a webhook the way a CRM would: for the dev command, tests and benchmarks."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from crmsync.core.events import (
    CUSTOMER_CREATED,
    CUSTOMER_DELETED,
    CUSTOMER_MERGED,
    CUSTOMER_UPDATED,
    ERASURE_REQUESTED,
)
from crmsync.core.parsing import ascii_int
from webhooks.signature import sign

if TYPE_CHECKING:
    # Imported where a request is sent: `crmsync --help` reads this module's samples only.
    import requests

__all__ = [
    "signed_request",
    "send_event",
    "sample_event",
    "hubspot_request",
    "hubspot_sample",
    "salesforce_message",
    "salesforce_sample",
    "pipedrive_body",
    "basic_auth",
    "send_sample",
    "SAMPLE_TYPES",
    "sandbox_purchase_ids",
    "SAMPLE_SOURCES",
    "SAMPLE_IDS",
    "SAMPLE_NAMES",
    "SAMPLE_CREDENTIALS",
]

# The event types `sample_event` makes, in the order of a customer's life.
SAMPLE_TYPES = (CUSTOMER_CREATED, CUSTOMER_UPDATED, CUSTOMER_MERGED, ERASURE_REQUESTED, CUSTOMER_DELETED)
# The formats `crmsync send-sample --source` sends: crmsync's own contract, and each CRM's.
SAMPLE_SOURCES = ("crm", "hubspot", "salesforce", "pipedrive")

# The record id each source's sample uses by default (HubSpot and Pipedrive ids are numbers).
SAMPLE_IDS = {"crm": "crm-0001", "hubspot": "1001", "salesforce": "001000000000001AAA", "pipedrive": "2001"}
# The settings each CRM's sample is signed or authenticated with (the service's own names).
SAMPLE_CREDENTIALS = {
    "hubspot": ("HUBSPOT_CLIENT_SECRET",),
    "salesforce": ("SALESFORCE_ORGANIZATION_IDS", "SALESFORCE_WEBHOOK_TOKEN"),
    "pipedrive": ("PIPEDRIVE_WEBHOOK_USER", "PIPEDRIVE_WEBHOOK_PASSWORD"),
}
# Each source's sample names its own customer: the platform refuses two customers with one name.
SAMPLE_NAMES = {"crm": "Mars Missions", "hubspot": "Jupiter Freight", "salesforce": "Saturn Rings Ltd",
                "pipedrive": "Venus Ventures"}  # fmt: skip


def signed_request(
    secret: bytes, event: dict[str, Any], webhook_id: str | None = None, timestamp: int | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of a Standard Webhooks delivery of `event`."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }
    return headers, body


def send_event(
    url: str, secret: bytes, event: dict[str, Any], webhook_id: str | None = None
) -> requests.Response:
    """POST one signed event to crmsync's webhook endpoint."""
    import requests

    headers, body = signed_request(secret, event, webhook_id)
    return requests.post(url, data=body, headers=headers, timeout=10)


def sample_event(
    event_type: str = CUSTOMER_CREATED,
    external_id: str = "crm-0001",
    name: str = "Mars Missions",
    purchase_ids: Sequence[int] = (),
) -> dict[str, Any]:
    """A sample event of `event_type` like the CRM would send; an erasure names `purchase_ids`, by
    default the purchases the sandbox is seeded with in `crmsync dev`."""
    data: dict[str, Any] = {"external_id": external_id}
    if event_type == CUSTOMER_CREATED:
        data.update(name=name, description="Mars Missions Corp", labels=["Space", "enterprise"])
    elif event_type == CUSTOMER_UPDATED:
        data.update(description="Mars Missions Corp, now on the Moon too", labels=["Space", "lunar"])
    elif event_type == CUSTOMER_MERGED:
        data["merged_ids"] = [f"{external_id}-duplicate"]
    elif event_type == ERASURE_REQUESTED:
        data["purchase_ids"] = list(purchase_ids or sandbox_purchase_ids())
    elif event_type != CUSTOMER_DELETED:
        raise ValueError(f"no sample for event type {event_type!r}")
    return {
        "type": event_type,
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
        "data": data,
    }


def sandbox_purchase_ids() -> list[int]:
    """The ids of the purchases in the sandbox's fixture (what `crmsync dev` seeds it with)."""
    fixture = resources.files("sandbox").joinpath("fixtures", "purchases.json")
    return [int(purchase["id"]) for purchase in json.loads(fixture.read_text())]


# -- the CRMs' own formats (docs/crm-sources.md), for `crmsync send-sample --source` and `crmsync dev` --


def hubspot_request(
    url: str, client_secret: str, events: list[dict[str, Any]], timestamp_ms: int | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a HubSpot delivery of `events`, signed v3 for `url` as HubSpot signs it."""
    from webhooks.sources.hubspot import sign_v3

    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    body = json.dumps(events, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        "x-hubspot-signature-v3": sign_v3(client_secret, "POST", url, body, timestamp_ms),
        "x-hubspot-request-timestamp": str(timestamp_ms),
    }
    return headers, body


def hubspot_sample(object_id: int = 1001, name: str = "Mars Missions") -> list[dict[str, Any]]:
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


def salesforce_message(organization_id: str, notifications: list[tuple[str, str, dict[str, str]]]) -> bytes:
    """A SOAP Outbound Message: (notification id, sObject type, fields) for each notification."""
    items = []
    for notification_id, sobject_type, fields in notifications:
        values = "".join(f"<sf:{name}>{escape(value)}</sf:{name}>" for name, value in fields.items())
        items.append(
            f'<Notification><Id>{notification_id}</Id><sObject xsi:type="sf:{sobject_type}" '
            f'xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{values}</sObject></Notification>'
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization_id}</OrganizationId><ActionId>04k000000000001AAA</ActionId>"
        '<SessionId xsi:nil="true"/>'
        f"{''.join(items)}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def salesforce_sample(
    organization_id: str, record_id: str = "001000000000001AAA", name: str = "Mars Missions"
) -> bytes:
    """A message with one Account notification."""
    modified = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    fields = {"Id": record_id, "LastModifiedDate": modified, "Name": name, "IsDeleted": "false"}
    return salesforce_message(organization_id, [(f"04l{uuid.uuid4().hex[:15]}", "Account", fields)])


def pipedrive_body(action: str, data: dict[str, Any] | None, previous: dict[str, Any] | None = None,
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
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def send_sample(
    source: str, url: str, env: Mapping[str, str], external_id: str, name: str
) -> requests.Response:
    """POST a sample of `source`'s own format to `url`, with the credentials the service's settings in
    `env` name; external_id is the CRM's record id (a number for HubSpot and Pipedrive). ValueError
    names a missing setting or an unusable id."""
    import requests

    missing = [name for name in SAMPLE_CREDENTIALS.get(source, ()) if not env.get(name, "").strip()]
    if missing:
        raise ValueError(f"set {' and '.join(missing)} to what the service verifies {source} webhooks with")
    if source in ("hubspot", "pipedrive") and ascii_int(external_id, 20) is None:
        raise ValueError(f"a {source} record id is a number, got {external_id!r}")
    if source == "hubspot":
        secret = env.get("HUBSPOT_CLIENT_SECRET", "")
        headers, body = hubspot_request(url, secret, hubspot_sample(int(external_id), name))
        return requests.post(url, data=body, headers=headers, timeout=10)
    if source == "salesforce":
        organization = re.split(r"[\s,]+", env.get("SALESFORCE_ORGANIZATION_IDS", "").strip())[0]
        separator = "&" if "?" in url else "?"
        target = (
            f"{url}{separator}token={env.get('SALESFORCE_WEBHOOK_TOKEN', '')}" if "token=" not in url else url
        )
        body = salesforce_sample(organization, external_id, name)
        return requests.post(target, data=body, headers={"content-type": "text/xml; charset=utf-8",
                                                          "SOAPAction": '""'}, timeout=10)  # fmt: skip
    if source == "pipedrive":
        body = pipedrive_body("change", {"id": int(external_id), "name": name})
        auth = basic_auth(env.get("PIPEDRIVE_WEBHOOK_USER", ""), env.get("PIPEDRIVE_WEBHOOK_PASSWORD", ""))
        headers = {"content-type": "application/json", "authorization": auth}
        return requests.post(url, data=body, headers=headers, timeout=10)
    raise ValueError(f"unknown source {source!r}")
