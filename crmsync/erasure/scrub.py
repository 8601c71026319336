"""Forgetting a customer's personal data held in the queue when their erasure is accepted.

Every accepted event's job id is indexed per customer (`customer_jobs_key`, written by the intake
script). For an erasure, each indexed job whose event is at or before the erasure (by version) and
that is not running is scrubbed in one transaction: its payload loses the personal fields and gains
a `superseded_by_erasure` mark (so a replay does nothing) — the scrubbed payload is written into the
job's hash and its payload key (`EventJob`) deleted — its stored failure messages are redacted,
and a queued, scheduled or failed job is cancelled (moved to RQ's canceled registry). A finished job
keeps its status, without the data. Events after the erasure are left alone: they are new data the
CRM sent after the request, applied in order like any other.

A running job cannot be scrubbed from outside (the worker saves its in-memory copy when it ends), so
it is reported back: the erasure job retries until it is done, and a job that finds itself superseded
by an erasure scrubs its own payload (`scrub_current_job`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq import get_current_job
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from crmsync.core import rq_internals
from crmsync.core.events import PERSONAL_FIELDS, Event
from crmsync.core.keys import customer_jobs_key, job_id_for
from crmsync.core.redaction import redact
from crmsync.core.redis_conn import as_text

__all__ = ["ScrubReport", "scrub_customer_jobs", "scrub_current_job", "scrubbed_payload", "SUPERSEDED"]

SUPERSEDED = "superseded_by_erasure"
# Jobs in these states wait for a worker (or an operator's replay): they are cancelled once scrubbed.
_CANCELLABLE = {
    JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.DEFERRED
}  # fmt: skip


@dataclass
class ScrubReport:
    """Which jobs were scrubbed now, and which were running and must be scrubbed later."""

    scrubbed: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)


def scrubbed_payload(payload: dict[str, Any], erasure_webhook_id: str) -> dict[str, Any]:
    """`payload` without its personal fields, marked as superseded by the erasure."""
    data = {name: value for name, value in payload["data"].items() if name not in PERSONAL_FIELDS}
    return {**payload, "data": data, SUPERSEDED: erasure_webhook_id}


def scrub_customer_jobs(redis: Redis, erasure: Event) -> ScrubReport:
    """Scrub every job of `erasure`'s customer at or before it; report the ones still running."""
    index = customer_jobs_key(erasure.external_id)
    report = ScrubReport()
    for member in sorted(redis.smembers(index)):
        job_id = as_text(member)
        if job_id == job_id_for(erasure.webhook_id):
            continue
        verdict = _scrub_job(redis, job_id, erasure)
        if verdict == "gone":
            redis.srem(index, job_id)
        elif verdict == "scrubbed":
            report.scrubbed.append(job_id)
        elif verdict == "running":
            report.running.append(job_id)
    return report


def scrub_current_job(erasure_webhook_id: str) -> None:
    """Scrub the job this worker is running: RQ saves the job's in-memory copy when it ends."""
    job = get_current_job()
    if job is None:
        return
    job.args = [scrubbed_payload(job.args[0], erasure_webhook_id)]
    job.meta[SUPERSEDED] = erasure_webhook_id
    with job.connection.pipeline() as pipe:
        rq_internals.save_job_data(pipe, job, job.meta)
        pipe.execute()


def _scrub_job(redis: Redis, job_id: str, erasure: Event) -> str:
    """Scrub one job atomically; a worker touching it meanwhile makes the transaction start over."""
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(*rq_internals.job_keys(job_id))
                return _scrub_watched(redis, pipe, job_id, erasure)
            except WatchError:
                continue


def _scrub_watched(redis: Redis, pipe: Pipeline, job_id: str, erasure: Event) -> str:
    try:
        job = rq_internals.EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
        payload = job.args[0]
    except NoSuchJobError:
        return "gone"
    except (DeserializationError, IndexError):
        return "foreign"  # Not a crmsync event job: nothing of ours to scrub.
    if payload.get(SUPERSEDED):
        return "done"
    event = Event.from_payload(payload)
    if event.version > erasure.version:
        return "newer"
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED:
        return "running"
    personal = event.personal_values()
    job.args = [scrubbed_payload(payload, erasure.webhook_id)]
    meta = {**job.meta, SUPERSEDED: erasure.webhook_id}
    for attempt in meta.get("attempts", []):
        attempt["message"] = redact(str(attempt.get("message", "")), personal)
    exc_info = rq_internals.stored_exc_info(redis, job)
    results, results_ttl = rq_internals.stored_results(redis, job_id)
    pipe.multi()
    rq_internals.save_job_data(pipe, job, meta)
    if exc_info:
        rq_internals.save_exc_info(pipe, job, redact(exc_info, personal))
    if results:
        rq_internals.rewrite_results(pipe, job_id, results, results_ttl, lambda text: redact(text, personal))
    if status in _CANCELLABLE:
        job.cancel(pipeline=pipe)
    pipe.execute()
    return "scrubbed"
