"""The one module relying on RQ's private storage format agrees with RQ itself."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from rq.utils import now, utcformat, utcparse

from crmsync.core.counters import current_minute
from crmsync.core.events import Event
from crmsync.core.keys import MINUTE_COUNTER_TTL, minute_counter_key
from crmsync.core.queue import EventJob, EventQueue, app_queue
from crmsync.core.redis_conn import as_text
from crmsync.core.rq_internals import enqueue_time
from crmsync.core.settings import Settings
from jobs.worker import SyncWorker

DATA = {"external_id": "crm-1", "name": "N"}
EVENT = Event("msg_1", "customer.updated", "2026-11-22T10:00:00.000000Z", DATA)


def test_the_accepted_job_hash_is_the_one_rq_would_store(settings: Settings, redis: Redis) -> None:
    queue = EventQueue(redis, settings)
    stored = redis.hgetall(Job.key_for(queue.accept(EVENT).job_id))
    # What RQ itself stores (`Job.create` + `to_dict`, as redis-py encodes it), empty fields left out.
    encode = redis.get_encoder().encode
    expected = {encode(name): encode(value) for name, value in queue.build_job(EVENT).to_dict().items()
                if value != ""}  # fmt: skip
    # The timestamps differ by the microseconds between the two builds: same fields, same format.
    for stamp in (b"created_at", b"enqueued_at"):
        assert len(stored.pop(stamp)) == len(expected.pop(stamp))
    assert stored == expected


def test_a_worker_reads_the_accepted_job_as_rq_built_it(settings: Settings, redis: Redis) -> None:
    queue = EventQueue(redis, settings)
    reference = queue.build_job(EVENT)
    job = EventJob.fetch(queue.accept(EVENT).job_id, connection=redis, serializer=reference.serializer)
    assert list(reference.args) == []  # the call is stored without its argument ...
    assert list(job.args) == [EVENT.to_payload()]  # ... which EventJob reads from the payload key
    for attribute in ("func_name", "kwargs", "meta", "description", "origin", "timeout",
                      "result_ttl", "failure_ttl", "retries_left", "retry_intervals"):  # fmt: skip
        assert getattr(job, attribute) == getattr(reference, attribute), attribute
    assert job.get_status() == "queued"


def test_the_enqueue_time_is_now_as_rq_writes_it_across_seconds() -> None:
    """`enqueue_time` formats each second once: every stamp lies between RQ's own before and after,
    also in the calls right after a new second begins."""
    seconds: set[str] = set()
    deadline = time.monotonic() + 2.5
    while len(seconds) < 3 and time.monotonic() < deadline:
        before = utcformat(now())
        stamp = enqueue_time()
        after = utcformat(now())
        assert before <= stamp <= after
        seconds.add(stamp[:19])
    assert len(seconds) >= 2
    assert utcformat(utcparse(stamp)) == stamp


def test_an_event_is_accepted_after_redis_forgot_the_accept_script(settings: Settings, redis: Redis) -> None:
    queue = EventQueue(redis, settings)
    assert queue.accept(EVENT).is_new
    redis.script_flush()  # as after a restart of a Redis that keeps no scripts
    second = queue.accept(Event("msg_2", EVENT.type, EVENT.timestamp, DATA))
    assert second.is_new
    assert redis.exists(Job.key_for(second.job_id))


def test_each_minutes_counters_count_their_requests_and_expire(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accept script gives a counter its TTL when it creates it; the queue names the counters
    once a minute."""
    queue = EventQueue(redis, settings)
    minute = current_minute()
    for n, at in enumerate((minute, minute, minute + 1, minute + 1)):
        monkeypatch.setattr("crmsync.core.queue.current_minute", lambda at=at: at)
        queue.accept(Event(f"msg_minute_{n % 3}", EVENT.type, EVENT.timestamp, DATA))  # the last: a duplicate
    counted = {(outcome, at): redis.get(minute_counter_key(outcome, at))
               for outcome in ("accepted", "duplicate") for at in (minute, minute + 1)}  # fmt: skip
    assert counted == {("accepted", minute): b"2", ("duplicate", minute): None,
                       ("accepted", minute + 1): b"1", ("duplicate", minute + 1): b"1"}  # fmt: skip
    for (outcome, at), count in counted.items():
        if count is not None:
            assert 0 < redis.ttl(minute_counter_key(outcome, at)) <= MINUTE_COUNTER_TTL


def test_a_batch_past_luas_unpack_limit_is_queued_whole_in_order(settings: Settings, redis: Redis) -> None:
    """ACCEPT_SCRIPT pushes a request's new jobs with one RPUSH per 1,000: Lua's `unpack` refuses
    ~8,000 values, and a request of small events under MAX_BODY_BYTES can hold more."""
    queue = EventQueue(redis, settings)
    events = [Event(f"msg_{n}", "customer.deleted", EVENT.timestamp, {"external_id": f"crm-{n}"})
              for n in range(9_000)]  # fmt: skip
    before = current_minute()
    accepted = queue.accept_batch([*events, *events[:10]])
    minutes = {before, current_minute()}  # the counters' minute, should one have begun meanwhile
    assert [outcome.is_new for outcome in accepted] == [True] * 9_000 + [False] * 10
    assert [as_text(job_id) for job_id in redis.lrange(app_queue(redis, settings.queue_name).key, 0, -1)] == [
        outcome.job_id for outcome in accepted[:9_000]
    ]
    counts = [sum(int(redis.get(minute_counter_key(outcome, minute)) or 0) for minute in minutes)
              for outcome in ("accepted", "duplicate")]  # fmt: skip
    assert counts == [9_000, 10]


def test_a_worker_killed_while_scheduling_a_retry_leaves_the_job_to_the_next_workers_cleanup(
    settings: Settings, redis: Redis, worker: SyncWorker
) -> None:
    """RQ's `Job.retry` wrote SCHEDULED at once and the registries in the worker's transaction: a
    worker killed in between left a job that no registry held, never run (the soak's one stall in
    ten runs). Here the transaction is dropped, as a killed worker's is; another worker's cleanup of
    the started registry must find the job and retry it (queued again: the tests' retry delays are 0)."""
    job_id = EventQueue(redis, settings).accept(EVENT).job_id
    queue = app_queue(redis, settings.queue_name)
    job = queue.fetch_job(job_id)
    assert job is not None and queue.remove(job_id) == 1  # dequeued, as the worker does
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    job.retry_intervals = [60]  # as jobs.tasks sets the next delay (a 0 s delay queues at once)
    with redis.pipeline() as transaction:
        job.retry(queue, transaction)  # the worker's failure handling, until the process dies
        transaction.reset()
    assert EventJob.fetch(job_id, connection=redis).get_status() == JobStatus.STARTED
    assert job_id not in queue.scheduled_job_registry.get_job_ids()

    queue.started_job_registry.cleanup(timestamp=time.time() + 3_600)  # the dead worker's heartbeat ran out
    assert queue.get_job_ids() == [job_id]
    assert EventJob.fetch(job_id, connection=redis).get_status() == JobStatus.QUEUED
