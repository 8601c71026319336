"""Coalescing: a customer's queued updates applied as one mutation with the event a worker takes.

A CRM bulk edit sends one webhook per changed property: three properties of one company are three
events, each a platform request. When a worker takes a created/updated event, the customer's other
events already waiting in the queue (found through the customer's job index, which the intake writes
for the erasure scrub: `customer_jobs_key`) are merged into one write, field by field: the value of
the highest version wins, and only where it is newer than what the ledger says was applied
(`coalesce`, a pure rule). The ledger then records each field's own version.

The other events stay queued. When a worker takes one of them, the ledger shows its fields written at
its own version: it ends as "coalesced", with no request. So every guarantee is the ledger's, as for
any event: per-customer order and deduplication; a crash before the ledger's commit redoes all of
them (the taken job is retried, the others are still queued); a failed write fails the taken job,
whose attempts list every event the write carried, and the others are tried on their own.

A delete, a merge or an erasure queued for the customer is a barrier: the event is then applied alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from rq.job import Job

from crmsync.core.events import CUSTOMER_CREATED, CUSTOMER_UPDATED, Event
from crmsync.core.keys import customer_jobs_key, payload_key
from crmsync.core.redis_conn import LuaScript, as_text

from .ordering import Ledger

__all__ = ["Coalesced", "coalesce", "QueuedEvent", "QueuedEvents", "MAX_INDEXED_JOBS"]

# A customer with more indexed jobs than this (days of history) is applied event by event: the
# read below stays one short round trip.
MAX_INDEXED_JOBS = 64
_MERGEABLE = (CUSTOMER_CREATED, CUSTOMER_UPDATED)

# KEYS: the customer's job index. ARGV: the most jobs to look at, the taken job's id, RQ's job key
# prefix, the payload key prefix. Returns -1 (too many jobs), else (job id, enqueued_at, payload)
# of every other job of the customer that is queued.
_QUEUED = """
if redis.call('SCARD', KEYS[1]) > tonumber(ARGV[1]) then
  return -1
end
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[2] then
    local job = redis.call('HMGET', ARGV[3] .. id, 'status', 'enqueued_at')
    if job[1] == 'queued' then
      local payload = redis.call('GET', ARGV[4] .. id)
      if payload then
        found[#found + 1] = id
        found[#found + 1] = job[2] or ''
        found[#found + 1] = payload
      end
    end
  end
end
return found
"""


@dataclass(frozen=True)
class QueuedEvent:
    """Another job of the customer, waiting in the queue."""

    job_id: str
    enqueued_at: str
    event: Event


@dataclass(frozen=True)
class Coalesced:
    """One write: the fields to send, and the version each value comes from."""

    fields: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def carried_by(self, events: list[Event]) -> list[Event]:
        """The events whose values this write carries."""
        chosen = set(self.versions.values())
        return [event for event in events if event.version in chosen]


def coalesce(ledger: Ledger, events: list[Event]) -> Coalesced:
    """Each field's value from the highest-versioned event carrying it, where that is newer than
    what `ledger` says was applied (and after its delete and erasure); whatever the events' order."""
    fields: dict[str, Any] = {}
    versions: dict[str, str] = {}
    for event in events:
        version = event.version
        for name, value in ledger.fields_to_write(version, event.customer_fields()).items():
            if version > versions.get(name, ""):
                fields[name], versions[name] = value, version
    return Coalesced(fields, versions)


class QueuedEvents:
    """Reads a customer's other queued events in one round trip."""

    def __init__(self, redis: Redis) -> None:
        self._read = LuaScript(redis, _QUEUED)

    def of(self, external_id: str, taken_job_id: str) -> list[QueuedEvent] | None:
        """The customer's other queued created/updated events; None when one of them is a barrier
        (delete, merge, erasure) or the customer has too many jobs indexed to look at."""
        found = self._read(keys=[customer_jobs_key(external_id)],
                           args=[MAX_INDEXED_JOBS, taken_job_id, Job.redis_job_namespace_prefix,
                                 payload_key("")])  # fmt: skip
        if found == -1:
            return None
        queued = []
        for index in range(0, len(found), 3):
            event = Event.from_payload(json.loads(found[index + 2]))
            if event.type not in _MERGEABLE or event.external_id != external_id:
                return None
            queued.append(QueuedEvent(as_text(found[index]), as_text(found[index + 1]), event))
        return queued
