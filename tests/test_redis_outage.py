"""A Redis outage while jobs flow: the same worker process (and its scheduler) backs off, reconnects
and finishes every job; nothing is lost or left in the started registry.

A real redis-server with an append-only file (fsync on every write) is stopped mid-burst, either
gracefully or with `kill -9`, and started again on the same port and data directory 8 s later, as a
Heroku Redis maintenance restart or a failover would do. The worker is a real `crmsync worker`
process; the outage it rides out is as long as the test's, the code tolerates much longer ones
(`REDIS_RECONNECT_MAX_SECONDS` caps the backoff; the worker never gives up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from crmsync.cli.embedded_redis import EmbeddedRedis, start_embedded_redis
from crmsync.core.events import Event
from crmsync.core.queue import EventJob
from crmsync.core.settings import Settings
from jobs.redis_outage import settle_interrupted_job
from jobs.worker import build_worker
from sandbox.server import RunningSandbox
from tests.support import CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN, Platform, set_faults
from webhooks.intake import Intake
from webhooks.schemas import load_event

OUTAGE_SECONDS = 8
CUSTOMERS = 20


@pytest.fixture
def aof_redis() -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, persisting every write to its append-only file."""
    server = start_embedded_redis(appendonly=True)
    yield server
    server.stop()


def event(webhook_id: str, kind: str, external_id: str, at: str, name: str) -> Event:
    body = {"type": f"customer.{kind}", "timestamp": at, "data": {"external_id": external_id, "name": name}}
    return Event(webhook_id=webhook_id, **load_event(body))


def enqueue_burst(redis: Redis, settings: Settings) -> list[str]:
    """Each customer is created, then renamed: the final state shows every job's effect, in order."""
    intake = Intake(redis, settings)
    job_ids = []
    for n in range(CUSTOMERS):
        created = event(f"msg_{n}_created", "created", f"crm-{n}", "2026-11-22T10:00:00Z", f"Customer {n}")
        renamed = event(f"msg_{n}_renamed", "updated", f"crm-{n}", "2026-11-22T11:00:00Z", f"Customer {n} 2")
        job_ids.extend([intake.accept(created).job_id, intake.accept(renamed).job_id])
    return job_ids


def statuses(redis: Redis, job_ids: list[str]) -> list[JobStatus | None]:
    return [job.get_status(refresh=False) if job else None for job in EventJob.fetch_many(
        job_ids, connection=redis, serializer=JSONSerializer)]  # fmt: skip


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll `condition` (it reads Redis or the sandbox) until it holds, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.05)


def scheduler_pid(redis: Redis) -> int:
    """The pid of the RQ scheduler process that holds the queue's scheduler lock."""
    name = redis.get("rq:scheduler-lock:crmsync")
    assert isinstance(name, bytes), "no scheduler holds the queue's lock"
    return int(redis.hget(f"rq:scheduler:{name.decode()}", "pid") or 0)


def worker_pids(redis: Redis) -> list[int]:
    """The pids of the worker processes registered in Redis (one per process of the worker dyno)."""
    return sorted(worker.pid or 0 for worker in Worker.all(connection=redis))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def worker_concurrency() -> int:
    """WORKER_CONCURRENCY of the worker process: 1, unless a test parametrizes it."""
    return 1


@pytest.fixture
def worker_process(
    settings: Settings, aof_redis: EmbeddedRedis, sandbox: RunningSandbox, worker_concurrency: int
) -> Iterator[subprocess.Popen[bytes]]:
    """One `crmsync worker` process (with its scheduler) on the test's own Redis."""
    customers_api, personal_data_api = settings.customers_api, settings.personal_data_api
    assert customers_api is not None and personal_data_api is not None
    env = {
        **os.environ,
        "REDIS_URL": aof_redis.url,
        "CUSTOMERS_API_URL": customers_api.url,
        "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN,
        "PERSONAL_DATA_API_URL": personal_data_api.url,
        "PERSONAL_DATA_API_TOKEN": PERSONAL_DATA_TOKEN,
        "API_TIMEOUT_SECONDS": "10",
        # While a job runs, the worker's key lives its timeout + 5 s: 7 s, less than the outage, so
        # the worker's registration expires with Redis down and must be written again.
        "JOB_TIMEOUT_SECONDS": "2",
        "RETRY_SCHEDULE": "2,2,2,2,2,2,2,2,2,2",
        "WORKER_MAINTENANCE_INTERVAL": "1",
        "IN_FLIGHT_HOLD_SECONDS": "1",
        "REDIS_RECONNECT_MAX_SECONDS": "1",
        "WORKER_CONCURRENCY": str(worker_concurrency),
        "LOG_LEVEL": "WARNING",
    }
    # Its own process group, so that the scheduler child goes with it at the end.
    process = subprocess.Popen([sys.executable, "-m", "crmsync", "worker"], env=env, start_new_session=True)
    yield process
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group has exited already
    process.wait()


@pytest.mark.parametrize(
    ("stop_signal", "worker_concurrency"),
    [(signal.SIGTERM, 3), (signal.SIGKILL, 1)],
    ids=["graceful-restart-3-workers", "kill-9-1-worker"],
)
def test_the_same_worker_finishes_every_job_after_redis_restarts_mid_burst(
    stop_signal: signal.Signals,
    worker_concurrency: int,
    settings: Settings,
    aof_redis: EmbeddedRedis,
    sandbox: RunningSandbox,
    platform: Platform,
    worker_process: subprocess.Popen[bytes],
) -> None:
    # Each API call takes a little while, so that the burst is still flowing when Redis goes away.
    set_faults(sandbox, slow_rate=1.0, slow_seconds=0.05)
    redis = Redis.from_url(aof_redis.url)
    job_ids = enqueue_burst(
        redis, replace(settings, redis_url=aof_redis.url, retry_schedule=(2,) * 10, job_timeout_seconds=2)
    )
    wait_until(lambda: statuses(redis, job_ids).count(JobStatus.FINISHED) >= 6, "a few jobs are done")
    workers, scheduler = worker_pids(redis), scheduler_pid(redis)
    assert len(workers) == worker_concurrency  # the dyno's workers are threads of one process
    redis.close()

    aof_redis.process.send_signal(stop_signal)
    aof_redis.process.wait()
    time.sleep(OUTAGE_SECONDS)  # the outage itself: no event to wait for
    assert worker_process.poll() is None, "the worker exited while Redis was down"
    restarted = start_embedded_redis(appendonly=True, port=aof_redis.port, directory=aof_redis.directory)
    aof_redis.process = restarted.process  # the fixture stops this one

    redis = Redis.from_url(aof_redis.url)
    unfinished = len(job_ids) - statuses(redis, job_ids).count(JobStatus.FINISHED)
    assert unfinished > 0, "the burst ended before the outage"
    wait_until(lambda: statuses(redis, job_ids) == [JobStatus.FINISHED] * len(job_ids), "every job finished")
    queue = Queue("crmsync", connection=redis, serializer=JSONSerializer)
    assert queue.count == 0
    assert queue.started_job_registry.get_job_ids() == []
    assert queue.scheduled_job_registry.get_job_ids() == []
    assert queue.failed_job_registry.get_job_ids() == []
    # The same worker process did it, and its scheduler rode the outage out too.
    assert worker_process.poll() is None
    assert worker_pids(redis) == workers and all(alive(pid) for pid in workers)
    assert scheduler_pid(redis) == scheduler and alive(scheduler)
    query = "{ customers(isSystem: false) { nodes { externalId name } } }"
    nodes = platform(query)["data"]["customers"]["nodes"]
    assert sorted((node["externalId"], node["name"]) for node in nodes) == sorted(
        (f"crm-{n}", f"Customer {n} 2") for n in range(CUSTOMERS)
    )


def test_sigterm_during_an_outage_stops_the_worker_at_once(
    aof_redis: EmbeddedRedis, worker_process: subprocess.Popen[bytes]
) -> None:
    redis = Redis.from_url(aof_redis.url)

    # Idle, waiting for jobs: past its start-up, its SIGTERM handler installed.
    def idle() -> bool:
        states = [worker.get_state() for worker in Worker.all(connection=redis)]
        return bool(states) and all(state == "idle" for state in states)

    wait_until(idle, "the worker waits for jobs")
    aof_redis.process.send_signal(signal.SIGKILL)
    aof_redis.process.wait()
    worker_process.send_signal(signal.SIGTERM)
    # Heroku sends SIGKILL 30 s after SIGTERM: waiting for Redis must not hold the shutdown up.
    assert worker_process.wait(timeout=20) == 0


def test_a_stop_request_lost_in_library_code_still_stops_a_worker_waiting_for_redis(
    settings: Settings, redis: Redis
) -> None:
    """RQ stops an idle worker by raising from its signal handler; raised while the worker's main
    thread runs code that swallows exceptions (a redis connection's `__del__`, as happens between
    reconnects), the exception is gone. The flag the outage wait polls must be set all the same."""
    worker = build_worker(settings, redis)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            worker.request_stop(signal.SIGTERM, None)
        except StopRequested:
            pass  # what `except Exception: pass` in a finalizer does with it
        assert worker.stop_requested
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        worker.runtime.close()


def interrupted_job(redis: Redis, settings: Settings) -> tuple[Job, Queue, Execution]:
    """A job as a Redis outage leaves it: dequeued and started by a worker that never finished it."""
    intake = Intake(redis, settings)
    job_id = intake.accept(event("msg_1", "created", "crm-1", "2026-11-22T10:00:00Z", "Mars Missions")).job_id
    worker = build_worker(settings, redis)
    job, queue = worker.dequeue_job_and_maintain_ttl(timeout=None)
    assert job.id == job_id
    execution = worker.prepare_execution(job)
    worker.prepare_job_execution(job, remove_from_intermediate_queue=True)
    worker.runtime.close()
    return job, queue, execution


def test_a_job_cut_off_by_an_outage_is_queued_again_once_redis_is_back(
    redis: Redis, settings: Settings
) -> None:
    job, queue, execution = interrupted_job(redis, settings)
    assert job.get_status() == JobStatus.STARTED
    redis.delete(execution.key)  # expired during the outage; its registry entry has not
    assert settle_interrupted_job(job, queue) == "requeued"
    assert job.get_status() == JobStatus.QUEUED
    assert queue.get_job_ids() == [job.id]
    assert queue.started_job_registry.get_job_ids() == []
    assert [attempt["class"] for attempt in job.get_meta()["attempts"]] == ["redis_unavailable"]
    # Settled again (Redis went away again meanwhile): left as it is, queued once.
    assert settle_interrupted_job(job, queue) == "recorded"
    assert queue.get_job_ids() == [job.id]


def test_a_job_whose_outcome_was_written_before_the_outage_keeps_it(redis: Redis, settings: Settings) -> None:
    job, queue, execution = interrupted_job(redis, settings)
    with redis.pipeline() as pipeline:
        job.set_status(JobStatus.FINISHED, pipeline=pipeline)
        execution.delete(job=job, pipeline=pipeline)
        pipeline.execute()
    assert settle_interrupted_job(job, queue) == "recorded"
    assert job.get_status() == JobStatus.FINISHED
    assert queue.get_job_ids() == []
