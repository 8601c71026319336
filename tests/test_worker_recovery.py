"""A killed worker's jobs are recovered by the workers left, in bounded time: even when the worker died
during its maintenance pass, holding the lock under which one worker at a time cleans the registries
(RQ's lasts 899 s), and even for a merge waiting on such a job (jobs/merge_barrier.py).

The workers are real `crmsync worker` processes (the `dyno` fixture), killed with SIGKILL as a dyno
dies. No assertion on speed: each wait has a generous timeout, far below RQ's 15-minute lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from redis import Redis
from rq.job import Callback, Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from crmsync.core.settings import Settings
from sandbox.server import RunningSandbox
from tests.support import Dyno, Platform, customers, enqueue, event, set_faults, status, wait_until

QUEUE = "crmsync"
# The key of RQ's `Queue.acquire_maintenance_lock`: one worker at a time cleans the queue's registries.
MAINTENANCE_LOCK = f"rq:clean_registries:{QUEUE}"
# Set by the first worker that runs `hold_the_maintenance_pass`.
HOLDING = "test:holding-the-maintenance-pass"
# Far below RQ's 899 s lock: a recovery that waits for that lock fails the test.
RECOVERY_TIMEOUT_SECONDS = 120


def hold_the_maintenance_pass(job: Job, connection: Redis, *exc_info: Any) -> None:
    """A failure callback, which RQ runs inside the maintenance pass that finds its job abandoned: the
    first worker to run it stays in that pass (holding the maintenance lock) until it is killed."""
    if connection.set(HOLDING, 1, nx=True):
        time.sleep(RECOVERY_TIMEOUT_SECONDS)


def abandoned_job_that_holds_the_pass(redis: Redis) -> None:
    """What a dead worker leaves, with `hold_the_maintenance_pass` as its failure callback: a STARTED
    job whose started registry entry has expired."""
    job = Job.create(
        "builtins.print",
        connection=redis,
        serializer=JSONSerializer,
        id="holds-the-pass",
        origin=QUEUE,
        on_failure=Callback(hold_the_maintenance_pass, timeout=2 * RECOVERY_TIMEOUT_SECONDS),
    )
    job.save()
    job.set_status(JobStatus.STARTED)
    redis.zadd(StartedJobRegistry(QUEUE, connection=redis).key, {f"{job.id}:dead-execution": 1})


def accept(settings: Settings, redis: Redis, item: dict[str, Any], webhook_id: str) -> str:
    """`item`'s job, with a short timeout: a killed job counts as abandoned sooner."""
    return enqueue(settings, redis, webhook_id, item, job_timeout_seconds=3)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's whole process group, as when a dyno dies."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def started_then_killed(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, dyno: Dyno, item: dict[str, Any]
) -> str:
    """`item`'s job, started by a worker that is then killed mid-job (a slow API holds it there)."""
    set_faults(sandbox, slow_rate=1.0, slow_seconds=2.0)
    doomed = dyno(WORKER_CONCURRENCY="1")
    job_id = accept(settings, redis, item, "msg_killed_mid_job")
    wait_until(lambda: status(redis, job_id) == JobStatus.STARTED, "the job started")
    kill(doomed)
    set_faults(sandbox)
    return job_id


def test_a_job_of_a_worker_killed_with_another_in_its_maintenance_pass_is_recovered(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    abandoned_job_that_holds_the_pass(redis)
    in_pass = dyno(WORKER_CONCURRENCY="1")  # its first pass finds that job, and stays in it
    wait_until(lambda: bool(redis.exists(HOLDING)), "a worker in its maintenance pass")
    job_id = started_then_killed(settings, redis, sandbox, dyno, event("created", name="Mars Missions"))
    kill(in_pass)
    assert redis.exists(MAINTENANCE_LOCK)  # left behind by the killed worker
    dyno(WORKER_CONCURRENCY="1")
    wait_until(lambda: status(redis, job_id) == JobStatus.FINISHED, "the killed job applied",
               RECOVERY_TIMEOUT_SECONDS)  # fmt: skip
    assert [customer["name"] for customer in customers(platform)] == ["Mars Missions"]


def test_a_merge_waiting_on_a_killed_workers_job_completes_once_it_is_recovered(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    created = event("created", external_id="crm-1", at="2026-11-22T10:00:00Z", name="Acme")
    created_job = started_then_killed(settings, redis, sandbox, dyno, created)
    merged = event("merged", external_id="crm-2", at="2026-11-22T10:01:00Z", merged_ids=["crm-1"])
    merge_job = accept(settings, redis, merged, "msg_merge")
    dyno(WORKER_CONCURRENCY="1")
    wait_until(lambda: status(redis, merge_job) == JobStatus.FINISHED, "the merge applied",
               RECOVERY_TIMEOUT_SECONDS)  # fmt: skip
    assert status(redis, created_job) == JobStatus.FINISHED
    # The merge waited for the create: the record it re-keyed to the new survivor exists.
    assert [customer["name"] for customer in customers(platform, "crm-2")] == ["Acme"]
