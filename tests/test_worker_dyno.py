"""A worker dyno with WORKER_CONCURRENCY > 1 (crmsync workers as threads of one process), for real.

Several jobs run at once, yet each customer's events still apply in order; SIGTERM lets every running
job finish (Heroku's window) and stops one that outlasts the grace as a timeout, to be retried; the
jobs of a dyno that is killed are recovered and applied once.
"""

from __future__ import annotations

import os
import signal

from redis import Redis
from rq import Worker
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from crmsync.core.queue import EventJob
from crmsync.core.settings import Settings
from sandbox.server import RunningSandbox
from tests.support import Dyno, Platform, customers, enqueue, event, set_faults, stats, status, wait_until


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
    job = EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
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


def test_a_job_past_its_timeout_is_stopped_in_its_thread_and_retried(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, dyno: Dyno
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=4.0)
    dyno(WORKER_CONCURRENCY="2", API_TIMEOUT_SECONDS="30")
    slow = event("created", "crm-slow", name="Slow")
    job_id = enqueue(settings, redis, "msg-slow", slow, job_timeout_seconds=1, retry_schedule=(30,))
    wait_until(lambda: status(redis, job_id) == JobStatus.SCHEDULED, "the job stopped and scheduled again")
    job = EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
    # Stopped while waiting on the API: that request's outcome is unknown, so either class may record it.
    assert [attempt["class"] for attempt in job.meta["attempts"]] in (["timeout"], ["api_unavailable"])


def test_the_dynos_scheduler_thread_brings_a_failed_job_back_for_its_retry(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    set_faults(sandbox, unavailable_rate=1.0)
    dyno(WORKER_CONCURRENCY="2", RETRY_SCHEDULE="1")
    created = event("created", "crm-retry", name="Mars Missions")
    job_id = enqueue(settings, redis, "msg-retry", created, retry_schedule=(1,))
    wait_until(lambda: status(redis, job_id) == JobStatus.SCHEDULED, "the job failed once")
    set_faults(sandbox)
    wait_until(lambda: status(redis, job_id) == JobStatus.FINISHED, "the job retried and applied")
    assert [customer["name"] for customer in customers(platform, "crm-retry")] == ["Mars Missions"]
