"""Signing and sending a webhook the way a CRM would: for the dev command, tests and benchmarks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import requests

from crmsync.core.events import CUSTOMER_CREATED, CUSTOMER_DELETED, CUSTOMER_UPDATED, ERASURE_REQUESTED
from webhooks.signature import sign

__all__ = ["signed_request", "send_event", "sample_event", "SAMPLE_TYPES", "sandbox_purchase_ids"]

# The event types `sample_event` makes, in the order of a customer's life.
SAMPLE_TYPES = (CUSTOMER_CREATED, CUSTOMER_UPDATED, ERASURE_REQUESTED, CUSTOMER_DELETED)


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
