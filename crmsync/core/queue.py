"""The app's RQ queue, built in one place: accepting an event as a job, the retry budget, and the
one rule for "will this job be tried again?".

Accepting an event remembers its delivery id and enqueues its job atomically, in one round trip: a
Lua script (crmsync.core.rq_internals) does the duplicate check, the job write and the queue push
together, so N parallel deliveries of one webhook id enqueue exactly one job, and a crash can never
leave a delivery remembered but not queued (which would make the CRM's redelivery look like a
duplicate and lose it). The job hash itself is RQ's own serialisation, so workers read it as any
RQ job: `EventJob`, whose argument, the event's payload, is kept in a key of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq.exceptions import DeserializationError
from rq.job import Job, Retry
from rq.queue import Queue
from rq.serializers import JSONSerializer

from . import rq_internals
from .counters import current_minute
from .events import Event
from .keys import (
    CUSTOMER_JOBS_TTL_SECONDS,
    JOB_FAILURE_TTL_SECONDS,
    JOB_RESULT_TTL_SECONDS,
    MINUTE_COUNTER_TTL,
    REJECTED_ITEMS_KEPT,
    REJECTED_ITEMS_KEY,
    REJECTED_ITEMS_TTL_SECONDS,
    SOURCE_ITEMS_KEY,
    SOURCE_ITEMS_TTL_SECONDS,
    customer_jobs_key,
    delivery_key,
    job_id_for,
    minute_counter_key,
    payload_key,
)
from .redis_conn import LuaScript, as_text
from .settings import Settings

__all__ = [
    "APPLY_EVENT",
    "EventJob",
    "app_queue",
    "retry_policy",
    "will_retry",
    "Accepted",
    "EventQueue",
    "summary",
    "job_summary",
]

# The job function, by name: the receiving side enqueues it without importing the applying side.
APPLY_EVENT = "jobs.tasks.apply_event"
# The app's job class: whoever reads a job's arguments fetches it with this class.
EventJob = rq_internals.EventJob


def app_queue(redis: Redis, queue_name: str) -> Queue:
    """The app's queue (JSON-serialised jobs) on `redis`."""
    return Queue(queue_name, connection=redis, serializer=JSONSerializer, job_class=EventJob)


def retry_policy(schedule: tuple[int, ...]) -> Retry | None:
    """The RQ retry budget for one event: one retry per entry of the schedule."""
    if not schedule:
        return None
    return Retry(max=len(schedule), interval=list(schedule))


def will_retry(job: Job | None) -> bool:
    """Whether a job that fails now is tried again: it has retries left (a permanent failure sets
    them to 0 first). No job (a function called outside a worker) is never retried."""
    return job is not None and bool(job.retries_left)


@dataclass(frozen=True)
class Accepted:
    """The outcome of accepting one delivery."""

    job_id: str
    is_new: bool


class EventQueue:
    """Turns validated events into RQ jobs on the app's queue, each delivery id at most once."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._queue = app_queue(redis, settings.queue_name)
        self._accept = LuaScript(redis, rq_internals.ACCEPT_SCRIPT)
        self._minute_counters: tuple[int, tuple[str, ...]] = (-1, ())
        self._job_fields = rq_internals.QueuedJobFields(
            APPLY_EVENT,
            origin=settings.queue_name,
            timeout=settings.job_timeout_seconds,
            result_ttl=JOB_RESULT_TTL_SECONDS,
            failure_ttl=JOB_FAILURE_TTL_SECONDS,
            retry=retry_policy(settings.retry_schedule),
        )

    def accept(self, event: Event) -> Accepted:
        """Enqueue `event` unless a delivery with its webhook id was already accepted."""
        return self.accept_batch([event])[0]

    def accept_batch(
        self,
        events: Sequence[Event],
        item_counts: Mapping[str, int] | None = None,
        rejected: Sequence[Mapping[str, str]] = (),
    ) -> list[Accepted]:
        """Enqueue every event whose webhook id was not accepted before, count `item_counts` (source
        items hash fields) and keep the `rejected` items' records: one round trip, all or nothing."""
        counts = {name: count for name, count in (item_counts or {}).items() if count}
        if not events and not counts and not rejected:
            return []
        keys = [self._queue.key, self._queue.redis_queues_keys, *self._counter_keys(),
                SOURCE_ITEMS_KEY, REJECTED_ITEMS_KEY]  # fmt: skip
        args: list[Any] = [self._settings.dedup_ttl_seconds, MINUTE_COUNTER_TTL, CUSTOMER_JOBS_TTL_SECONDS,
                           REJECTED_ITEMS_TTL_SECONDS, REJECTED_ITEMS_KEPT, SOURCE_ITEMS_TTL_SECONDS,
                           len(events), len(counts), len(rejected)]  # fmt: skip
        enqueued_at = rq_internals.enqueue_time()
        for event in events:
            job_id = job_id_for(event.webhook_id)
            # The type only as description (identifiers are in the payload): every byte is kept per event.
            fields = self._job_fields.packed(event.type, enqueued_at)
            keys += [
                delivery_key(job_id),
                Job.key_for(job_id),
                customer_jobs_key(event.external_id),
                payload_key(job_id),
            ]
            args += [job_id, fields, JSONSerializer.dumps(event.to_payload())]
        for name, count in counts.items():
            args += [name, count]
        for record in rejected:
            pairs = [item for pair in record.items() for item in pair]
            args += [len(pairs), *pairs]
        results = self._accept(keys=keys, args=args)
        return [
            Accepted(job_id=as_text(results[i + 1]), is_new=bool(results[i]))
            for i in range(0, len(results), 2)
        ]

    def _counter_keys(self) -> tuple[str, ...]:
        """This minute's accepted, duplicate and rejected counters, named once a minute."""
        minute = current_minute()
        named = self._minute_counters  # one read: another thread may replace it meanwhile
        if named[0] != minute:
            keys = tuple(minute_counter_key(outcome, minute) for outcome in _COUNTED_OUTCOMES)
            named = self._minute_counters = (minute, keys)
        return named[1]

    def build_job(self, event: Event) -> Job:
        """The RQ job that applies `event`, built by RQ (without saving it): what `accept` stores,
        field for field, through `QueuedJobFields` (tests/test_rq_internals.py). Its call has no
        arguments: `accept` keeps the payload in the job's payload key."""
        job = EventJob.create(
            APPLY_EVENT,
            connection=self._redis,
            id=job_id_for(event.webhook_id),
            serializer=JSONSerializer,
            timeout=self._settings.job_timeout_seconds,
            result_ttl=JOB_RESULT_TTL_SECONDS,
            failure_ttl=JOB_FAILURE_TTL_SECONDS,
            # The type only: identifiers are in the payload, and every byte here is kept per queued event.
            description=event.type,
            retry=retry_policy(self._settings.retry_schedule),
            origin=self._settings.queue_name,
        )
        rq_internals.mark_queued(job)
        return job


def summary(event: Event) -> dict[str, Any]:
    """What operators may see of an event: identifiers and type, never names or descriptions."""
    return {
        "webhook_id": event.webhook_id,
        "type": event.type,
        "external_id": event.data["external_id"],
        "event_timestamp": event.timestamp,
    }


def job_summary(job: Job) -> dict[str, Any]:
    """The identifiers of a job's event: from its `meta` once a failure stamped them there
    (jobs/attempts.py), else read from its payload; {} when neither is there (a foreign job, or a
    payload gone)."""
    if "type" in job.meta:
        return {name: job.meta[name] for name in _SUMMARY_FIELDS if name in job.meta}
    try:
        return summary(Event.from_payload(job.args[0]))
    except (DeserializationError, IndexError, KeyError, TypeError, ValueError):
        return {}


# The order ACCEPT_SCRIPT takes their counters in (KEYS[3] to KEYS[5]).
_COUNTED_OUTCOMES = ("accepted", "duplicate", "rejected")
_SUMMARY_FIELDS = ("webhook_id", "type", "external_id", "event_timestamp")
