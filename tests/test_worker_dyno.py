"""A worker dyno with WORKER_CONCURRENCY > 1 (crmsync workers as threads of one process), for real.

Several jobs run at once, yet each customer's events still apply in order; SIGTERM lets every running
job finish (Heroku's window) and stops one that outlasts the grace as a timeout, to be retried; the
jobs of a dyno that is killed are recovered and applied once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from crmsync.core.events import Event
from crmsync.core.settings import Settings
from sandbox.server import RunningSandbox
from tests.support import CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN, Platform, customers, event, set_faults, stats
from webhooks.intake import Intake
from webhooks.schemas import load_event

Dyno = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def dyno(settings: Settings, redis: Redis) -> Iterator[Dyno]:
    """Start `crmsync worker` (the Procfile's worker line) with WORKER_CONCURRENCY and other settings
    from the environment, in its own process group, as a dyno; killed with its group at the end."""
    started: list[subprocess.Popen[bytes]] = []
    assert settings.customers_api is not None and settings.personal_data_api is not None
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "CUSTOMERS_API_URL": settings.customers_api.url,
        "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN,
        "PERSONAL_DATA_API_URL": settings.personal_data_api.url,
        "PERSONAL_DATA_API_TOKEN": PERSONAL_DATA_TOKEN,
        "WORKER_MAINTENANCE_INTERVAL": "1",
        "IN_FLIGHT_HOLD_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }

    def start(*arguments: str, **overrides: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "crmsync", "worker", *arguments]
        process = subprocess.Popen(command, env={**env, **overrides}, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group has exited already
        process.wait()


def enqueue(settings: Settings, redis: Redis, webhook_id: str, body: dict[str, Any], **overrides: Any) -> str:
    intake = Intake(redis, replace(settings, **overrides))
    return intake.accept(Event(webhook_id=webhook_id, **load_event(body))).job_id


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll `condition` until it holds (no fixed sleeps), or fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def status(redis: Redis, job_id: str) -> JobStatus | None:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status()


def create_three(settings: Settings, redis: Redis) -> list[str]:
    """Enqueue the creation of customers crm-0..2, named C 0..2; return their job ids."""
    return [
        enqueue(settings, redis, f"msg-{n}", event("created", f"crm-{n}", name=f"C {n}")) for n in range(3)
    ]


def all_started(redis: Redis, job_ids: list[str]) -> bool:
    return all(status(redis, job_id) == JobStatus.STARTED for job_id in job_ids)


def test_events_of_many_customers_apply_concurrently_each_customer_in_order(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    # Each customer's later update arrives first; whichever worker takes which, the newer value wins.
    job_ids = []
    for n in range(12):
        newer = event("updated", f"crm-{n}", "2026-11-22T10:00:05Z", name=f"New {n}")
        older = event("created", f"crm-{n}", "2026-11-22T10:00:00Z", name=f"Old {n}")
        job_ids += [enqueue(settings, redis, f"upd-{n}", newer), enqueue(settings, redis, f"new-{n}", older)]
    process = dyno("--burst", WORKER_CONCURRENCY="3")
    assert process.wait(timeout=120) == 0
    assert {status(redis, job_id) for job_id in job_ids} == {JobStatus.FINISHED}
    assert [customers(platform, f"crm-{n}")[0]["name"] for n in range(12)] == [f"New {n}" for n in range(12)]
    assert stats(sandbox)["mutations"]["createCustomer"] == 12


def test_three_workers_take_three_jobs_at_once(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, dyno: Dyno
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=2.0)
    job_ids = [
        enqueue(settings, redis, f"msg-{n}", event("created", f"crm-{n}", name=f"C {n}")) for n in range(3)
    ]
    dyno(WORKER_CONCURRENCY="3")
    wait_until(
        lambda: all(status(redis, job_id) == JobStatus.STARTED for job_id in job_ids), "3 jobs started"
    )
    assert len(Worker.all(connection=redis)) == 3


def test_sigterm_to_the_dyno_lets_every_running_job_finish_then_exits(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=1.0)
    process = dyno(WORKER_CONCURRENCY="3")
    job_ids = [
        enqueue(settings, redis, f"msg-{n}", event("created", f"crm-{n}", name=f"C {n}")) for n in range(3)
    ]
    wait_until(
        lambda: all(status(redis, job_id) == JobStatus.STARTED for job_id in job_ids), "3 jobs started"
    )
    os.killpg(process.pid, signal.SIGTERM)  # Heroku signals every process of the dyno
    assert process.wait(timeout=30) == 0  # SIGKILL would come 30 s after SIGTERM
    assert {status(redis, job_id) for job_id in job_ids} == {JobStatus.FINISHED}
    assert sorted(customer["name"] for n in range(3) for customer in customers(platform, f"crm-{n}")) == [
        "C 0", "C 1", "C 2"
    ]  # fmt: skip


def test_sigterm_stops_a_job_past_the_grace_as_a_timeout_and_it_is_retried(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, dyno: Dyno
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=8.0)
    process = dyno(WORKER_CONCURRENCY="2", WORKER_SHUTDOWN_GRACE_SECONDS="1")
    job_id = enqueue(
        settings, redis, "msg-slow", event("created", "crm-slow", name="Slow"), retry_schedule=(30,)
    )
    wait_until(lambda: status(redis, job_id) == JobStatus.STARTED, "job started")
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.SCHEDULED
    # Stopped while waiting on the API: that request's outcome is unknown, so either class may record it.
    assert [attempt["class"] for attempt in job.meta["attempts"]] in (["timeout"], ["api_unavailable"])


def test_the_jobs_of_a_killed_dyno_are_recovered_and_applied_once(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=2.0)
    doomed = dyno(WORKER_CONCURRENCY="3")
    # A short job timeout: the dead dyno's jobs count as abandoned 5 s after it, not after a minute.
    job_ids = [enqueue(settings, redis, f"msg-{n}", event("created", f"crm-{n}", name=f"C {n}"),
                       job_timeout_seconds=3) for n in range(3)]  # fmt: skip
    wait_until(lambda: all_started(redis, job_ids), "3 jobs started")
    os.killpg(doomed.pid, signal.SIGKILL)  # the whole dyno, as when it dies
    doomed.wait()
    set_faults(sandbox)
    dyno(WORKER_CONCURRENCY="2")  # its maintenance finds the abandoned jobs and retries them
    wait_until(lambda: {status(redis, job_id) for job_id in job_ids} == {JobStatus.FINISHED}, "recovered")
    assert sorted(customer["name"] for n in range(3) for customer in customers(platform, f"crm-{n}")) == [
        "C 0", "C 1", "C 2"
    ]  # fmt: skip
    assert stats(sandbox)["mutations"]["createCustomer"] == 3
