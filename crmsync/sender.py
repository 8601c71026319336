"""Signing and sending a webhook the way a CRM would: for the dev command, tests and benchmarks."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import requests

from crmsync.core.events import CUSTOMER_CREATED
from webhooks.signature import sign

__all__ = ["signed_request", "send_event", "sample_event"]


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


def sample_event(external_id: str = "crm-0001", name: str = "Mars Missions") -> dict[str, Any]:
    """A `customer.created` event like the CRM would send."""
    return {
        "type": CUSTOMER_CREATED,
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
        "data": {
            "external_id": external_id,
            "name": name,
            "description": "Mars Missions Corp",
            "labels": ["Space", "enterprise"],
        },
    }
