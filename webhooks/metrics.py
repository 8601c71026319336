"""The receiving side's own Prometheus counters (exported by crmsync.web.metrics on `/metrics`).

Labels are event types and fixed codes only, never customer data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

__all__ = [
    "WEB_REGISTRY",
    "WEBHOOKS_RECEIVED",
    "record_webhook",
    "record_unexpected_error",
    "count_unexpected_errors_from_zero",
]

# The web's own metrics, in a registry of their own: the default one would add process metrics
# that mean little summed across gunicorn workers.
WEB_REGISTRY = CollectorRegistry()
WEBHOOKS_RECEIVED = Counter(
    "crmsync_webhooks_received",
    "Webhook deliveries by event type and outcome (queued, duplicate, rejected) and rejection reason.",
    ["type", "outcome", "reason"],
    registry=WEB_REGISTRY,
)

UNEXPECTED_ERRORS = Counter(
    "crmsync_unexpected_errors",
    "Requests answered 500 because of an unforeseen exception (a bug: alert on any), by endpoint.",
    ["endpoint"],
    registry=WEB_REGISTRY,
)


def record_unexpected_error(endpoint: str) -> None:
    """Count one request that failed with an unforeseen exception."""
    UNEXPECTED_ERRORS.labels(endpoint=endpoint).inc()


def count_unexpected_errors_from_zero(endpoints: Iterable[str]) -> None:
    """Export each endpoint's count at 0 from the start: an alert on its increase then fires on the
    first error (a series that first appears at 1 shows no increase)."""
    for endpoint in endpoints:
        UNEXPECTED_ERRORS.labels(endpoint=endpoint)


def record_webhook(event_type: str, outcome: str, reason: str = "") -> None:
    """Count one delivery. Rejected ones carry type "unknown": their type is unverified input."""
    labels = (event_type, outcome, reason)
    counter = _WEBHOOK_COUNTERS.get(labels)
    if counter is None:
        # prometheus-client checks and locks on every `labels()` call; the combinations are few.
        counter = _WEBHOOK_COUNTERS.setdefault(labels, WEBHOOKS_RECEIVED.labels(*labels))
    counter.inc()


_WEBHOOK_COUNTERS: dict[tuple[str, str, str], Any] = {}
