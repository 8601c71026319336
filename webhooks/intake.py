"""Accepting an event: enqueue its job once per delivery id (crmsync.core.queue), and for an erasure,
start it at once (audit its receipt, scrub the customer's queued data: crmsync.erasure)."""

from __future__ import annotations

import json
import logging
from collections import Counter

from redis import Redis
from redis.exceptions import RedisError

from crmsync.core.counters import VERSION_FALLBACK, source_item_field
from crmsync.core.events import ERASURE_REQUESTED, Event
from crmsync.core.queue import Accepted, EventQueue
from crmsync.core.settings import Settings
from crmsync.erasure import erasure_accepted

from .sources.items import SourceBatch

__all__ = ["Intake", "Accepted"]

log = logging.getLogger("crmsync.webhooks")


class Intake:
    """Turns verified, validated events into RQ jobs on the app's queue."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._queue = EventQueue(redis, settings)

    def accept(self, event: Event) -> Accepted:
        """Enqueue `event` unless a delivery with its webhook id was already accepted."""
        accepted = self._queue.accept(event)
        if accepted.is_new and event.type == ERASURE_REQUESTED:
            self._erasure_accepted(event)
        return accepted

    def accept_batch(self, batch: SourceBatch) -> list[Accepted]:
        """Accept every event of a CRM request, count its ignored and rejected items and its version
        fallbacks by type, keep its rejected items (reason and identifiers): one Redis round trip, all
        or nothing (RedisError: none)."""
        events = [Event(webhook_id=mapped.delivery_id, **mapped.event) for mapped in batch.events]
        counts = _item_counts(batch) if batch.ignored or batch.rejected or batch.version_fallbacks else {}
        records = [
            {
                "source": batch.source,
                "reason": item.reason,
                "ids": json.dumps(item.identifiers, sort_keys=True),
            }
            for item in batch.rejected
        ]
        accepted = self._queue.accept_batch(events, counts, records)
        for event, outcome in zip(events, accepted, strict=True):
            if outcome.is_new and event.type == ERASURE_REQUESTED:
                self._erasure_accepted(event)
        return accepted

    def _erasure_accepted(self, event: Event) -> None:
        """Audit the erasure's receipt and scrub the customer's queued data now, before any queued
        update can run. Erasures are rare, so this extra work in the request is cheap. The erasure job
        scrubs again once it has run, so a failure here is logged, not answered 503: it is queued."""
        try:
            erasure_accepted(self._redis, self._settings, event)
        except RedisError:
            extra = {"event": "erasure_scrub_deferred", "webhook_id": event.webhook_id}
            log.exception("erasure not scrubbed at intake", extra=extra)


def _item_counts(batch: SourceBatch) -> dict[str, int]:
    """The batch's ignored and rejected items and its version fallbacks, counted by type."""
    counts = {
        source_item_field(batch.source, "ignored", item_type): count
        for item_type, count in batch.ignored_by_type().items()
    }
    for item_type, count in batch.rejected_by_type().items():
        counts[source_item_field(batch.source, "rejected", item_type)] = count
    for fallback, count in Counter(batch.version_fallbacks).items():
        counts[source_item_field(batch.source, VERSION_FALLBACK, fallback)] = count
    return counts
