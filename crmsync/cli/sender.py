"""Signing and sending a webhook the way a CRM would: for the dev command, tests and benchmarks.

Each source's sample is its own (`sample()` of its kind, webhooks/sources/); this module sends it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from crmsync.core.events import (
    CUSTOMER_CREATED,
    CUSTOMER_DELETED,
    CUSTOMER_MERGED,
    CUSTOMER_UPDATED,
    ERASURE_REQUESTED,
)
from webhooks.sources import hubspot, pipedrive, salesforce
from webhooks.sources.registry import NAMES, SOURCES, kind_named
from webhooks.sources.standard import signed_delivery

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
]

# The event types `sample_event` makes, in the order of a customer's life.
SAMPLE_TYPES = (CUSTOMER_CREATED, CUSTOMER_UPDATED, CUSTOMER_MERGED, ERASURE_REQUESTED, CUSTOMER_DELETED)
# The formats `crmsync send-sample --source` sends: every source of the registry.
SAMPLE_SOURCES = NAMES
# Each source's sample record id and customer name (the platform refuses two customers with one name).
SAMPLE_IDS = {kind.name: kind.sample_id for kind in SOURCES}
SAMPLE_NAMES = {kind.name: kind.sample_name for kind in SOURCES}

# The CRMs' formats, kept under the names tests and benchmarks use.
signed_request = signed_delivery
hubspot_request = hubspot.signed_request
hubspot_sample = hubspot.sample_events
salesforce_message = salesforce.outbound_message
salesforce_sample = salesforce.sample_message
pipedrive_body = pipedrive.v2_body
basic_auth = pipedrive.basic_auth


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


def send_sample(
    source: str, url: str, env: Mapping[str, str], external_id: str, name: str
) -> requests.Response:
    """POST `source`'s sample (its own format) to `url`, authenticated with the service's settings in
    `env`; external_id is the CRM's record id (a number for HubSpot and Pipedrive). ValueError names a
    missing setting, an unusable id or an unknown source; SettingsError a malformed setting."""
    import requests

    sample = kind_named(source).sample(env, url, external_id, name)
    query = {key: value for key, value in sample.query.items() if f"{key}=" not in urlsplit(url).query}
    target = f"{url}{'&' if '?' in url else '?'}{urlencode(query)}" if query else url
    return requests.post(target, data=sample.body, headers=sample.headers, timeout=10)
