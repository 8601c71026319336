"""Accepting an event: remember its delivery id and enqueue its job, atomically, in one round trip.

A Lua script does the duplicate check, the job write and the queue push together, so N parallel
deliveries of one webhook id enqueue exactly one job, and a crash can never leave a delivery
remembered but not queued (which would make the CRM's redelivery look like a duplicate and lose it).
The job hash itself is RQ's own serialisation (`Job.to_dict`), so workers read it as any RQ job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import now

from crmsync.activity import current_minute, minute_counter_key
from crmsync.keys import customer_jobs_key, delivery_key, job_id_for
from crmsync.settings import Settings
from jobs.erasure_audit import ErasureAudit
from jobs.events import Event
from jobs.retry import retry_policy
from jobs.scrub import scrub_customer_jobs

__all__ = ["Intake", "Accepted", "APPLY_EVENT"]

APPLY_EVENT = "jobs.tasks.apply_event"
ERASURE_REQUESTED = "customer.erasure_requested"
log = logging.getLogger("crmsync.webhooks")

_ACCEPT_SCRIPT = """
-- KEYS: delivery key, job key, queue key, set of queues, this minute's accepted and duplicate counters
-- ARGV: job id, delivery ttl, job field/value pairs...
local known = redis.call('GET', KEYS[1])
if known then
  redis.call('INCR', KEYS[6])
  redis.call('EXPIRE', KEYS[6], 7200)
  return {0, known}
end
redis.call('INCR', KEYS[5])
redis.call('EXPIRE', KEYS[5], 7200)
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[4], KEYS[3])
redis.call('RPUSH', KEYS[3], ARGV[1])
-- The customer's job index (always the last key), so an erasure finds their jobs without a scan;
-- kept 62 days, longer than a failed job (30 days) plus its retries.
redis.call('SADD', KEYS[#KEYS], ARGV[1])
redis.call('EXPIRE', KEYS[#KEYS], 5356800)
return {1, ARGV[1]}
"""


@dataclass(frozen=True)
class Accepted:
    """The outcome of accepting one delivery."""

    job_id: str
    is_new: bool


class Intake:
    """Turns verified, validated events into RQ jobs on the app's queue."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
        self._accept = redis.register_script(_ACCEPT_SCRIPT)

    def accept(self, webhook_id: str, event: dict[str, Any]) -> Accepted:
        """Enqueue `event` unless a delivery with `webhook_id` was already accepted."""
        job = self.build_job(webhook_id, event)
        args: list[Any] = [job.id, self._settings.dedup_ttl_seconds]
        for name, value in job.to_dict().items():
            # RQ reads a missing field as empty; leaving the empty ones out (callbacks, started_at,
            # worker_name, ...) sends 16 fewer arguments and keeps ~0.5 KB per queued job out of Redis.
            if value != "":
                args += [name, value]
        minute = current_minute()
        keys = [delivery_key(webhook_id), job.key, self._queue.key, self._queue.redis_queues_keys,
                minute_counter_key("accepted", minute), minute_counter_key("duplicate", minute)]  # fmt: skip
        index = customer_jobs_key(event["data"]["external_id"])
        created, job_id = self._accept(keys=[*keys, index], args=args)
        job_id = job_id.decode() if isinstance(job_id, bytes) else job_id
        accepted = Accepted(job_id=job_id, is_new=bool(created))
        if accepted.is_new and event["type"] == ERASURE_REQUESTED:
            self._erasure_accepted(webhook_id, event)
        return accepted

    def _erasure_accepted(self, webhook_id: str, event: dict[str, Any]) -> None:
        """Audit the erasure's receipt and scrub the customer's queued data now, before any queued
        update can run. Erasures are rare, so this extra work in the request is cheap. The erasure job
        scrubs again once it has run, so a failure here is logged, not answered 503: it is queued."""
        erasure = Event.from_payload({"webhook_id": webhook_id, **event})
        audit = ErasureAudit.of(self._redis, self._settings)
        try:
            audit.received(webhook_id, erasure.external_id, list(event["data"]["purchase_ids"]))
            report = scrub_customer_jobs(self._redis, erasure)
            if report.scrubbed:
                audit.scrubbed(webhook_id, erasure.external_id, report.scrubbed)
        except RedisError:
            log.exception("erasure not scrubbed at intake", extra={"event": "erasure_scrub_deferred",
                                                                    "webhook_id": webhook_id})  # fmt: skip

    def build_job(self, webhook_id: str, event: dict[str, Any]) -> Job:
        """Build (without saving) the RQ job that applies `event`; no personal data in its description."""
        payload = {"webhook_id": webhook_id, **event}
        job = Job.create(
            APPLY_EVENT,
            args=(payload,),
            connection=self._redis,
            id=job_id_for(webhook_id),
            serializer=JSONSerializer,
            timeout=self._settings.job_timeout_seconds,
            result_ttl=86_400,
            failure_ttl=30 * 86_400,
            # The type only: identifiers are in `meta`, and every byte here is kept per queued event.
            description=event["type"],
            meta=summary(webhook_id, event),
            retry=retry_policy(self._settings.retry_schedule),
            origin=self._settings.queue_name,
        )
        job.enqueued_at = now()
        job._status = JobStatus.QUEUED
        return job


def summary(webhook_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """What operators may see of an event: identifiers and type, never names or descriptions."""
    return {
        "webhook_id": webhook_id,
        "type": event["type"],
        "external_id": event["data"]["external_id"],
        "event_timestamp": event["timestamp"],
    }
