"""A worker dyno with WORKER_CONCURRENCY > 1: RQ's worker pool of crmsync workers, as real processes.

Several jobs run at once, yet each customer's events still apply in order; SIGTERM lets every running
job finish (Heroku's window); a child that dies is replaced and its job is recovered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from crmsync.core.events import Event
from crmsync.core.settings import Settings
from jobs.pool import SyncWorkerPool
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


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_pool_forks_one_crmsync_worker_per_unit_of_concurrency(settings: Settings, redis: Redis) -> None:
    pool = SyncWorkerPool(replace(settings, worker_concurrency=4), redis)
    assert pool.num_workers == 4
    process = pool.get_worker_process("w1", burst=True)
    assert process.name == "crmsync worker w1"


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


def test_a_child_killed_mid_job_is_replaced_and_its_job_applied_once(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=2.0)
    process = dyno(WORKER_CONCURRENCY="2")
    wait_until(lambda: len(children(process.pid)) == 2, "2 children forked")
    # A short job timeout: the dead child's job counts as abandoned 5 s after it, not after a minute.
    created = event("created", "crm-kill", name="Mars Missions")
    job_id = enqueue(settings, redis, "msg-kill", created, job_timeout_seconds=3)
    wait_until(lambda: status(redis, job_id) == JobStatus.STARTED, "job started")
    busy = next(w for w in Worker.all(connection=redis) if w.get_current_job_id() == job_id)
    assert busy.pid is not None
    os.kill(busy.pid, signal.SIGKILL)
    set_faults(sandbox)
    wait_until(lambda: busy.pid not in children(process.pid) and len(children(process.pid)) == 2, "replaced")
    wait_until(lambda: status(redis, job_id) == JobStatus.FINISHED, "the abandoned job applied")
    assert [customer["name"] for customer in customers(platform, "crm-kill")] == ["Mars Missions"]
    assert stats(sandbox)["mutations"]["createCustomer"] == 1
