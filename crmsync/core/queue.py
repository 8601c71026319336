"""The app's RQ queue, built in one place: accepting an event as a job, the retry budget, and the
one rule for "will this job be tried again?".

Accepting an event remembers its delivery id and enqueues its job atomically, in one round trip: a
Lua script (crmsync.core.rq_internals) does the duplicate check, the job write and the queue push
together, so N parallel deliveries of one webhook id enqueue exactly one job, and a crash can never
leave a delivery remembered but not queued (which would make the CRM's redelivery look like a
duplicate and lose it). The job hash itself is RQ's own serialisation, so workers read it as any
RQ job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
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
    customer_jobs_key,
    delivery_key,
    job_id_for,
    minute_counter_key,
)
from .redis_conn import as_text
from .settings import Settings

__all__ = ["APPLY_EVENT", "app_queue", "retry_policy", "will_retry", "Accepted", "EventQueue", "summary"]

# The job function, by name: the receiving side enqueues it without importing the applying side.
APPLY_EVENT = "jobs.tasks.apply_event"


def app_queue(redis: Redis, queue_name: str) -> Queue:
    """The app's queue (JSON-serialised jobs) on `redis`."""
    return Queue(queue_name, connection=redis, serializer=JSONSerializer)


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
        self._accept = redis.register_script(rq_internals.ACCEPT_SCRIPT)

    def accept(self, event: Event) -> Accepted:
        """Enqueue `event` unless a delivery with its webhook id was already accepted."""
        job = self.build_job(event)
        args: list[Any] = [
            job.id,
            self._settings.dedup_ttl_seconds,
            MINUTE_COUNTER_TTL,
            CUSTOMER_JOBS_TTL_SECONDS,
            *rq_internals.accept_script_args(job),
        ]
        minute = current_minute()
        keys = [delivery_key(event.webhook_id), job.key, self._queue.key, self._queue.redis_queues_keys,
                minute_counter_key("accepted", minute), minute_counter_key("duplicate", minute)]  # fmt: skip
        index = customer_jobs_key(event.external_id)
        created, job_id = self._accept(keys=[*keys, index], args=args)
        job_id = as_text(job_id)
        return Accepted(job_id=job_id, is_new=bool(created))

    def build_job(self, event: Event) -> Job:
        """Build (without saving) the RQ job that applies `event`; no personal data in its description."""
        job = Job.create(
            APPLY_EVENT,
            args=(event.to_payload(),),
            connection=self._redis,
            id=job_id_for(event.webhook_id),
            serializer=JSONSerializer,
            timeout=self._settings.job_timeout_seconds,
            result_ttl=JOB_RESULT_TTL_SECONDS,
            failure_ttl=JOB_FAILURE_TTL_SECONDS,
            # The type only: identifiers are in `meta`, and every byte here is kept per queued event.
            description=event.type,
            meta=summary(event),
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
