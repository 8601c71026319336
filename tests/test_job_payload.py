"""A queued event's job hash stays compact (every value ≤ 64 bytes, so Redis keeps it as a listpack):
the event's payload lives in a key of its own, exactly as long as the job's hash."""

from __future__ import annotations

import json
import time

from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from crmsync.core.events import Event
from crmsync.core.keys import (
    CUSTOMER_JOBS_TTL_SECONDS,
    JOB_FAILURE_TTL_SECONDS,
    JOB_RESULT_TTL_SECONDS,
    customer_jobs_key,
    job_id_for,
    payload_key,
)
from crmsync.core.queue import EventJob, EventQueue
from crmsync.core.settings import Settings
from crmsync.operations import FailedJobs
from sandbox.server import RunningSandbox
from tests.support import Deliver, event, fail, job_of, work

EVENT = Event(
    "msg_1", "customer.updated", "2026-11-22T10:00:00.000000Z", {"external_id": "crm-1", "name": "N"}
)


def ttls(redis: Redis, job_id: str) -> tuple[int, int]:
    return int(redis.ttl(Job.key_for(job_id))), int(redis.ttl(payload_key(job_id)))


def test_a_queued_job_is_a_compact_hash_and_its_payload_a_key_of_its_own(
    settings: Settings, redis: Redis
) -> None:
    job_id = EventQueue(redis, settings).accept(EVENT).job_id
    # The compact encoding (a ziplist before Redis 7), not a hashtable.
    assert redis.object("encoding", Job.key_for(job_id)) in (b"listpack", b"ziplist")
    assert not redis.hexists(Job.key_for(job_id), "meta")  # identifiers are in the payload
    assert json.loads(redis.get(payload_key(job_id)) or b"null") == EVENT.to_payload()
    hash_ttl, payload_ttl = ttls(redis, job_id)
    assert hash_ttl == -1  # RQ's queued job does not expire ...
    # ... but its personal data does, with the index through which an erasure finds it, so that a job
    # deleted by a tool that knows nothing of the payload key leaves nothing behind for good.
    assert CUSTOMER_JOBS_TTL_SECONDS - 60 < payload_ttl <= CUSTOMER_JOBS_TTL_SECONDS


def test_a_finished_job_and_its_payload_expire_together(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    job = job_of(deliver(event("created", name="Mars Missions")), redis)
    work(settings, redis)
    assert job.get_status() == JobStatus.FINISHED
    hash_ttl, payload_ttl = ttls(redis, job.id)
    assert JOB_RESULT_TTL_SECONDS - 60 < hash_ttl <= JOB_RESULT_TTL_SECONDS
    assert abs(hash_ttl - payload_ttl) <= 1  # set in the same transaction


def test_a_failed_job_keeps_its_payload_as_long_as_itself_and_names_its_event_in_meta(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name="Mars Missions"))
    hash_ttl, payload_ttl = ttls(redis, job_id)
    assert JOB_FAILURE_TTL_SECONDS - 60 < hash_ttl <= JOB_FAILURE_TTL_SECONDS
    assert abs(hash_ttl - payload_ttl) <= 1
    meta = job_of_id(redis, job_id).meta
    assert (meta["type"], meta["external_id"]) == ("customer.created", "crm-1")
    assert job_id_for(meta["webhook_id"]) == job_id


def test_a_replayed_job_waits_as_a_new_one_not_on_its_failure_ttl(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    """RQ's requeue keeps the failure TTL on the hash: a replay waiting behind a backlog past it would
    vanish from the queue without a trace."""
    (job_id,) = fail(deliver, settings, redis, event("created", name="Mars Missions"))
    time.sleep(1.1)  # so that the customer's job index, written at acceptance, has aged
    (outcome,) = FailedJobs(redis, settings).replay([job_id], "tester")
    assert outcome.status == "replayed"
    hash_ttl, payload_ttl = ttls(redis, job_id)
    assert hash_ttl == -1
    assert CUSTOMER_JOBS_TTL_SECONDS - 60 < payload_ttl <= CUSTOMER_JOBS_TTL_SECONDS
    # The index through which an erasure finds the job lives at least as long as its payload.
    index_ms, payload_ms = int(redis.pttl(customer_jobs_key("crm-1"))), int(redis.pttl(payload_key(job_id)))
    assert index_ms > payload_ms - 500


def test_a_discarded_job_leaves_no_payload_behind(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name="Mars Missions"))
    (outcome,) = FailedJobs(redis, settings).discard([job_id], "not ours", "tester")
    assert outcome.status == "discarded"
    assert not redis.exists(Job.key_for(job_id), payload_key(job_id))


def test_a_job_whose_payload_was_deleted_fails_loudly(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    """Deleted outside crmsync (`rq empty`, a hand-run DEL): the job is recorded as failed, not lost."""
    job = job_of(deliver(event("created", name="Mars Missions")), redis)
    redis.delete(payload_key(job.id))
    work(settings, redis)
    job = job_of_id(redis, job.id)
    assert job.get_status() in (JobStatus.SCHEDULED, JobStatus.FAILED)
    classes = {attempt["class"] for attempt in job.meta["attempts"]}
    assert classes == {"payload_missing"}  # once per try, retries included


def job_of_id(redis: Redis, job_id: str) -> Job:
    return EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
