"""The platform APIs' rate limits are shared by every worker process and dyno through Redis, and a 429
pauses every worker's calls to that API, not only the throttled job's retry."""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests
from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from crmsync.core.errors import RateLimited
from crmsync.core.keys import api_pause_key, api_turn_key
from crmsync.core.queue import EventJob
from crmsync.core.settings import Settings, SettingsError
from jobs.rate_limit import RateLimit
from jobs.worker import build_worker
from sandbox.server import RunningSandbox
from tests.support import ADMIN, Deliver, Dyno, Platform, enqueue, event, names, set_faults, status


def job(redis: Redis, job_id: str) -> Job:
    return EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer)


def test_a_pause_set_by_one_worker_holds_back_the_others(redis: Redis) -> None:
    throttled = RateLimit(redis, "customers", per_second=0, max_wait_seconds=1)
    elsewhere = RateLimit(redis, "customers", per_second=0, max_wait_seconds=1)
    throttled.pause(30)
    with pytest.raises(RateLimited) as raised:
        elsewhere.wait_turn()
    assert raised.value.retry_after is not None and raised.value.retry_after > 1


def test_a_pause_is_never_shortened_by_a_later_shorter_one(redis: Redis) -> None:
    limit = RateLimit(redis, "customers", per_second=0, max_wait_seconds=1)
    limit.pause(30)
    limit.pause(1)
    assert redis.pttl(api_pause_key("customers")) > 1000


def test_a_pause_holds_back_only_its_own_api(redis: Redis) -> None:
    RateLimit(redis, "customers", per_second=0, max_wait_seconds=1).pause(30)
    RateLimit(redis, "personal-data", per_second=0, max_wait_seconds=1).wait_turn()  # does not raise


def test_a_turn_is_taken_by_one_caller_the_next_waits_for_its_own(redis: Redis) -> None:
    # One request per 100 s: the first caller gets the turn, a second (another process) must wait.
    first = RateLimit(redis, "customers", per_second=0.01, max_wait_seconds=1)
    second = RateLimit(redis, "customers", per_second=0.01, max_wait_seconds=1)
    first.wait_turn()
    with pytest.raises(RateLimited):
        second.wait_turn()
    assert redis.pttl(api_turn_key("customers")) > 100_000  # expires once the turn has passed


def test_a_429_pauses_the_next_jobs_calls_to_that_api(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    # Jobs wait at most half their timeout for a turn: 2 s here, far less than the 60 s Retry-After.
    worker = build_worker(replace(settings, job_timeout_seconds=4, retry_schedule=(30,)), redis)
    set_faults(sandbox, throttle_rate=1.0, retry_after=60)
    throttled = deliver(event("created", "crm-1", name="Mars Missions")).json()["job_id"]
    worker.work(burst=True, with_scheduler=False, max_jobs=1)
    set_faults(sandbox)  # the API would now answer: only the pause can hold the next job back
    held = deliver(event("created", "crm-2", name="Venus Voyages")).json()["job_id"]
    worker.work(burst=True, with_scheduler=False)
    assert job(redis, throttled).meta["attempts"][0]["class"] == "rate_limited"
    assert job(redis, held).get_status() == JobStatus.SCHEDULED
    assert job(redis, held).meta["attempts"][0]["class"] == "rate_limited"
    assert names(platform) == []  # the held job never reached the API


@pytest.mark.parametrize("value", ["0", "-3", "fast", "inf", "nan"])
def test_a_malformed_rate_limit_is_refused_naming_the_variable(value: str) -> None:
    env = {"CUSTOMERS_API_URL": "https://api.example", "CUSTOMERS_API_TOKEN": "t",
           "CUSTOMERS_API_RATE_LIMIT": value}  # fmt: skip
    with pytest.raises(SettingsError, match="CUSTOMERS_API_RATE_LIMIT"):
        Settings.from_env(env)


def test_rate_limits_are_read_per_api_in_requests_per_second() -> None:
    env = {"CUSTOMERS_API_URL": "https://a.example", "CUSTOMERS_API_TOKEN": "t",
           "CUSTOMERS_API_RATE_LIMIT": "2.5",
           "PERSONAL_DATA_API_URL": "https://b.example", "PERSONAL_DATA_API_TOKEN": "t"}  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.customers_api is not None and settings.customers_api.rate_limit == 2.5
    assert settings.personal_data_api is not None and settings.personal_data_api.rate_limit == 0


def test_two_worker_dynos_together_never_exceed_the_customers_api_rate_limit(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, dyno: Dyno
) -> None:
    # 40 creations = 40 customers-API calls (a new customer is created without a lookup) from 2 dynos
    # x 3 workers, far faster than 10/s without the limit: the sandbox counts what it received in each
    # second and in any sliding one.
    job_ids = [
        enqueue(settings, redis, f"msg-{n}", event("created", f"crm-{n}", name=f"C {n}")) for n in range(40)
    ]
    requests.delete(f"{sandbox.base_url}/admin/rates", headers=ADMIN, timeout=5).raise_for_status()
    dynos = [dyno("--burst", WORKER_CONCURRENCY="3", CUSTOMERS_API_RATE_LIMIT="10") for _ in range(2)]
    for process in dynos:
        assert process.wait(timeout=120) == 0
    assert {status(redis, job_id) for job_id in job_ids} == {JobStatus.FINISHED}
    received = requests.get(f"{sandbox.base_url}/admin/rates", headers=ADMIN, timeout=5).json()["customers"]
    assert received["total"] == 40
    assert received["max_per_second"] <= 10
    assert received["max_in_sliding_second"] <= 10
