"""`crmsync import`: every record of an export becomes an upsert event through the normal pipeline.

Records are streamed: a batch of them is held at a time, whatever the export's size. For each
batch the customers' ledgers are read in one pipelined round trip; a record whose every field the
ledger already holds at its version or a newer one is already up to date (the worker would find it
stale), so it is not queued at all. The others are accepted as deliveries (intake → queue →
worker), so ordering, retries, replay and the dashboard apply to them as to any webhook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from redis import Redis

from crmsync.core.events import Event
from crmsync.core.keys import customer_state_key
from crmsync.core.queue import Accepted
from crmsync.core.redis_conn import as_text
from jobs.ordering import Ledger

from .export_events import import_event
from .records import CustomerRecord, RecordSkipped, Skipped, SkippedLog

__all__ = ["ImportSummary", "import_records", "Accept"]

BATCH = 500

# Accepts one event as a delivery (crmsync.core.queue.EventQueue.accept).
Accept = Callable[[Event], Accepted]


@dataclass
class ImportSummary:
    """What an import did: records read, queued, already up to date or already queued, skipped."""

    read: int = 0
    queued: int = 0
    up_to_date: int = 0
    already_queued: int = 0
    skipped: SkippedLog = field(default_factory=SkippedLog)

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "queued": self.queued,
            "up_to_date": self.up_to_date,
            "already_queued": self.already_queued,
            "skipped": self.skipped.count,
            "skipped_records": self.skipped.to_json(),
        }


def import_records(
    items: Iterable[CustomerRecord | Skipped],
    as_of: str,
    redis: Redis,
    accept: Accept,
) -> ImportSummary:
    """Queue an upsert event for every record not already up to date; `as_of` versions the records
    that carry no version of their own."""
    summary = ImportSummary()
    for batch in _batches(iter(items)):
        events: list[Event] = []
        for item in batch:
            summary.read += 1
            if isinstance(item, Skipped):
                summary.skipped.add(item)
                continue
            try:
                events.append(import_event(item, as_of))
            except RecordSkipped as exc:
                summary.skipped.add(Skipped(item.line, str(exc), exc.external_id))
        for event, ledger in zip(events, _ledgers(redis, events), strict=True):
            if not ledger.fields_to_write(event.version, event.customer_fields()):
                summary.up_to_date += 1
            elif accept(event).is_new:
                summary.queued += 1
            else:
                summary.already_queued += 1
    return summary


def _ledgers(redis: Redis, events: list[Event]) -> list[Ledger]:
    """The ledgers of the events' customers, read in one round trip (without their locks: a ledger
    only moves forward, so one read a moment ago can only call up to date a record that still is)."""
    with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.hgetall(customer_state_key(event.external_id))
        found = pipe.execute()
    return [Ledger.from_redis({as_text(k): as_text(v) for k, v in pairs.items()}) for pairs in found]


def _batches(items: Iterator[CustomerRecord | Skipped]) -> Iterator[list[CustomerRecord | Skipped]]:
    while batch := list(islice(items, BATCH)):
        yield batch
