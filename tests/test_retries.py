"""Failures are classified; retryable ones come back with backoff, permanent ones fail at once."""

from __future__ import annotations

import time
from dataclasses import replace

import requests
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from crmsync.core.queue import EventJob
from crmsync.core.settings import Settings
from crmsync.web import create_app
from jobs.ordering import CustomerLedgers
from jobs.worker import SyncWorker, build_worker
from sandbox.server import RunningSandbox
from tests.support import (
    SECRET,
    STANDARD_ENV,
    Deliver,
    Platform,
    event,
    names,
    release_scheduled,
    served,
    set_faults,
    signed_request,
    stats,
)


def slow_retries(settings: Settings, redis: Redis) -> SyncWorker:
    """A worker whose retries wait 30 s: failed jobs stay scheduled until a test releases them."""
    return build_worker(replace(settings, retry_schedule=(30, 30)), redis)


def burst(worker: SyncWorker) -> None:
    worker.work(burst=True, with_scheduler=False)


def fetch(response: requests.Response, redis: Redis) -> Job:
    return EventJob.fetch(response.json()["job_id"], connection=redis, serializer=JSONSerializer)


def test_unavailable_api_is_retried_later_and_then_succeeds(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    worker = slow_retries(settings, redis)
    set_faults(sandbox, unavailable_rate=1.0)
    response = deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    burst(worker)
    job = fetch(response, redis)
    assert job.get_status() == JobStatus.SCHEDULED
    assert [attempt["class"] for attempt in job.meta["attempts"]] == ["api_unavailable"]
    set_faults(sandbox)
    release_scheduled(redis)
    burst(worker)
    assert job.get_status() == JobStatus.FINISHED
    assert names(platform) == ["Mars Missions"]


def test_rate_limit_waits_at_least_the_retry_after_the_api_asks_for(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = build_worker(replace(settings, retry_schedule=(1, 1)), redis)
    set_faults(sandbox, throttle_rate=1.0, retry_after=120)
    response = deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    burst(worker)
    job = fetch(response, redis)
    assert job.meta["attempts"][0]["class"] == "rate_limited"
    scheduled_at = Queue("crmsync", connection=redis).scheduled_job_registry.get_scheduled_time(job)
    assert scheduled_at.timestamp() >= time.time() + 110


def test_slow_api_past_the_client_timeout_is_retryable(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = slow_retries(replace(settings, api_timeout_seconds=0.5), redis)
    set_faults(sandbox, slow_rate=1.0, slow_seconds=2.0)
    response = deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    burst(worker)
    job = fetch(response, redis)
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.meta["attempts"][0]["class"] == "api_unavailable"
    assert "Timeout" in job.meta["attempts"][0]["message"]


def test_create_whose_response_was_lost_is_not_created_twice(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    worker = slow_retries(settings, redis)
    set_faults(sandbox, lost_response_rate=1.0)
    response = deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions", labels=["a"]))
    burst(worker)
    job = fetch(response, redis)
    assert job.meta["attempts"][0]["class"] == "api_unavailable"
    set_faults(sandbox)
    release_scheduled(redis)
    burst(worker)
    assert job.get_status() == JobStatus.FINISHED
    assert names(platform) == ["Mars Missions"]
    assert stats(sandbox)["mutations"]["createCustomer"] == 1


def test_exhausted_retries_land_in_the_failed_registry_with_every_attempt(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox
) -> None:
    set_faults(sandbox, unavailable_rate=1.0)
    response = deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    burst(worker)  # the test schedule retries at once: 1 attempt + 2 retries in this burst
    job = fetch(response, redis)
    assert job.get_status() == JobStatus.FAILED
    assert [attempt["class"] for attempt in job.meta["attempts"]] == ["api_unavailable"] * 3
    assert job.id in FailedJobRegistry("crmsync", connection=redis).get_job_ids()


def test_permanent_failure_spends_no_retries(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox
) -> None:
    deliver(event("created", at="2026-11-22T10:00:00Z", external_id="crm-1", name="Taken"))
    response = deliver(event("created", at="2026-11-22T10:00:00Z", external_id="crm-2", name="Taken"))
    burst(worker)
    job = fetch(response, redis)
    assert job.get_status() == JobStatus.FAILED
    assert [attempt["class"] for attempt in job.meta["attempts"]] == ["name_conflict"]


def test_a_retried_event_keeps_its_place_and_is_stale_after_a_newer_one(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    worker = slow_retries(settings, redis)
    deliver(event("created", at="2026-11-22T10:00:00Z", name="First"))
    burst(worker)
    set_faults(sandbox, unavailable_rate=1.0)
    older = deliver(event("updated", at="2026-11-22T10:01:00Z", name="Older"))
    burst(worker)
    set_faults(sandbox)
    deliver(event("updated", at="2026-11-22T10:02:00Z", name="Newer"))
    burst(worker)  # the newer event overtakes the older one, which waits for its retry
    release_scheduled(redis)
    burst(worker)
    job = fetch(older, redis)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {"outcome": "stale"}
    assert names(platform) == ["Newer"]


def test_lock_contention_is_retried_not_failed(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = slow_retries(settings, redis)
    response = deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    other_worker = CustomerLedgers(redis, lock_ttl_seconds=30, ledger_ttl_seconds=60, wait_seconds=0)
    with other_worker.locked("crm-1"):
        burst(worker)
    job = fetch(response, redis)
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.meta["attempts"][0]["class"] == "lock_contention"


def test_web_answers_503_not_202_while_redis_is_unreachable(settings: Settings) -> None:
    with served(
        create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"), environ=STANDARD_ENV)
    ) as base:
        headers, body = signed_request(SECRET, event("deleted", at="2026-11-22T10:00:00Z"))
        response = requests.post(f"{base}/webhooks/crm", data=body, headers=headers, timeout=10)
        assert response.status_code == 503
        assert response.json()["error"] == "queue_unavailable"
        assert requests.get(f"{base}/readyz", timeout=10).status_code == 503
