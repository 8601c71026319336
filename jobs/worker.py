"""The worker process: RQ's in-process worker with the JSON serializer and crmsync's runtime.

Jobs run in the worker process itself (no fork per job), so the HTTP sessions to the platform stay
open across jobs and parsed documents are reused. Crash safety does not rest on the fork: a killed
worker's job is found by another worker's maintenance pass (every WORKER_MAINTENANCE_INTERVAL s) and
retried, and the per-customer ledger makes the retry's effect happen once.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis import Redis
from redis.client import Pipeline
from rq import Queue, worker_registration
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.job import Job
from rq.registry import clean_registries
from rq.serializers import JSONSerializer
from rq.timeouts import BaseDeathPenalty, UnixSignalDeathPenalty
from rq.utils import now
from rq.worker import WorkerStatus

from crmsync.core import rq_internals
from crmsync.core.counters import record_job
from crmsync.core.errors import SyncError
from crmsync.core.events import ERASURE_REQUESTED
from crmsync.core.queue import app_queue, will_retry
from crmsync.core.settings import Settings
from crmsync.erasure.audit import ErasureAudit

from .attempts import add_attempt
from .redis_outage import (
    REDIS_UNAVAILABLE,
    Backoff,
    OutageTolerantScheduler,
    settle_interrupted_job,
    wait_for_redis,
)
from .runtime import Runtime, performing

__all__ = ["SyncWorker", "run_worker", "SHUTDOWN_GRACE_SECONDS"]

# Heroku sends SIGKILL 30 s after SIGTERM; a job still running after this is stopped (as a timeout,
# which is retried) so the worker records its state and exits before the kill.
SHUTDOWN_GRACE_SECONDS = 20
# A running job's registry entry expires this long after its timeout: then it counts as abandoned.
ABANDONED_AFTER_TIMEOUT_SECONDS = 5
# RQ's maintenance lock lives 899 s: a worker killed during its pass held back every other worker's
# pass, and so the recovery of abandoned jobs, for 15 minutes. Ours lives a maintenance interval, and
# at least this long: far more than a pass takes (milliseconds), so that two never overlap.
MAINTENANCE_LOCK_MIN_SECONDS = 10

log = logging.getLogger("crmsync.worker")
T = TypeVar("T")


def _alarm_by(deadline: float) -> type[BaseDeathPenalty]:
    """RQ's job timeout alarm (SIGALRM), set to go off no later than `deadline` (monotonic).

    RQ sets a job's alarm only once the job is prepared (its status STARTED). A SIGTERM in between
    shortens an alarm that is not there yet, and RQ then set the job's whole timeout: the job ran on
    past the shutdown's grace, and on Heroku past the SIGKILL 30 s after SIGTERM
    (tests/test_worker_process.py). A worker asked to stop uses this for the jobs it has yet to start."""

    class AlarmByDeadline(UnixSignalDeathPenalty):
        def setup_death_penalty(self) -> None:
            left = max(1, math.ceil(deadline - time.monotonic()))
            self._timeout = min(self._timeout, left) if self._timeout > 0 else left
            super().setup_death_penalty()

    return AlarmByDeadline


class SyncWorker(rq_internals.WorkerHooks):
    """An in-process RQ worker that stops a running job within Heroku's shutdown window, rides out
    Redis outages (jobs/redis_outage.py), and hands its runtime (settings and clients) to each job
    it performs."""

    runtime: Runtime

    shutdown_grace_seconds = SHUTDOWN_GRACE_SECONDS
    # RQ sends its worker heartbeat as three separate commands several times per job, and checks for
    # `rq suspend` before every job: 10 of a job's ~24 Redis round trips (docs/benchmarks.md). The
    # worker key lives for minutes, so one pipelined heartbeat every few seconds keeps it just as alive.
    heartbeat_every_seconds = 5.0
    suspension_check_every_seconds = 1.0
    _suspension_checked_at = 0.0

    # Between attempts to reach Redis while it is away (REDIS_RECONNECT_MAX_SECONDS caps it).
    reconnect_backoff = Backoff()

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        recent = self.last_heartbeat is not None and (
            (now() - self.last_heartbeat).total_seconds() < self.heartbeat_every_seconds
        )
        if timeout is None and recent:
            return
        try:
            with self.connection.pipeline(transaction=False) as batched:
                super().heartbeat(timeout, batched)
                batched.hexists(self.key, "pid")
                registered = batched.execute()[-1]
            if not registered and self.birth_date is not None:  # born, then lost with an outage
                self._register_again()
        except REDIS_UNAVAILABLE:
            # The worker key outlives several missed heartbeats; the step that needs Redis next waits.
            log.debug("heartbeat skipped: redis unavailable")

    def _register_again(self) -> None:
        """The worker's key expired (Redis was away longer than its TTL, which during a job is the
        job's timeout + 5 s), and RQ's writes since made a new one with a field or two: write the
        worker's description back, so that it shows (with its pid) among the live workers."""
        log.warning("worker registered again after its key expired", extra={"event": "worker_registered"})
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, mapping={**self.serialize(), "state": self.get_state()})
            worker_registration.register(self, pipeline)
            pipeline.execute()

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        # RQ marks the worker idle after each job and again before dequeuing the next one.
        if pipeline is None and state == self.get_state():
            return
        super().set_state(state, pipeline)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        # RQ writes the job's `last_heartbeat` here in a round trip of its own; the transaction that
        # records the outcome right after saves the job hash, this field with it.
        job.ended_at = job.last_heartbeat = now()

    def check_for_suspension(self, burst: bool) -> None:
        if time.monotonic() - self._suspension_checked_at < self.suspension_check_every_seconds:
            return
        self._suspension_checked_at = time.monotonic()
        self._riding_out(super().check_for_suspension, burst)

    # Redis outages. RQ's work loop ends the process on a connection error anywhere but in its wait
    # for a job; every step of it that talks to Redis waits for Redis to come back instead.

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        # Started while Redis is away (a dyno restarted during an outage): wait for it first.
        self._riding_out(self.connection.ping)
        super().bootstrap(*args, **kwargs)

    def register_birth(self) -> None:
        self._riding_out(super().register_birth)

    def run_maintenance_tasks(self) -> None:
        self._riding_out(super().run_maintenance_tasks)

    def clean_registries(self) -> None:
        """RQ 3.0's pass over each queue's registries (abandoned jobs retried, stuck ones requeued),
        under a lock that a worker killed or cut off from Redis mid-pass leaves for a maintenance
        interval (MAINTENANCE_LOCK_MIN_SECONDS at least), not RQ's 899 s."""
        lock_seconds = max(int(self.maintenance_interval), MAINTENANCE_LOCK_MIN_SECONDS)
        for queue in self.queues:
            # The key RQ's `Queue.acquire_maintenance_lock` sets, so that RQ's own workers (`rq
            # worker` on the same queue) and ours still take turns.
            if not self.connection.set(queue.registry_cleaning_key, 1, nx=True, ex=lock_seconds):
                continue
            try:
                clean_registries(queue, self._exc_handlers)
                worker_registration.clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
            finally:
                queue.release_maintenance_lock()
        self.last_cleaned_at = now()  # type: ignore[assignment]  # RQ declares it as None only

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        return self._riding_out(super().dequeue_job_and_maintain_ttl, timeout, max_idle_time)

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except REDIS_UNAVAILABLE as exc:
            # The outage cut the job off somewhere between being dequeued and its outcome being
            # written. Once Redis is back the outcome stands if RQ wrote it, else the job runs again.
            self.executions.clear()  # idle for the shutdown handler while we wait
            log.warning("redis went away during a job", extra={"event": "job_interrupted", "job_id": job.id})
            if not self._wait_for_redis(exc):
                return  # stopping: the job's registry entry expires, and maintenance retries it
            # Its customer's lock is freed (or held, after a request left without answer) first, so
            # that the job's rerun does not wait for the lock to expire.
            self._riding_out(self.runtime.ledgers.settle_after_outage)
            settled = self._riding_out(settle_interrupted_job, job, queue)
            log.warning(f"interrupted job {settled}", extra={"event": "job_settled", "job_id": job.id,
                                                             "outcome": settled})  # fmt: skip
            self._riding_out(self.set_state, WorkerStatus.IDLE)

    def set_shutdown_requested_date(self) -> None:
        try:
            super().set_shutdown_requested_date()
        except REDIS_UNAVAILABLE:
            pass  # informational only; the shutdown goes ahead

    def teardown(self) -> None:
        try:
            super().teardown()
        except REDIS_UNAVAILABLE:
            # The worker key expires on its own; what matters is that the process ends.
            log.warning("worker stopped without registering its death: redis unavailable")

    # RQ's per-worker command channel (the `rq` CLI's stop-job and kill-horse) is a pub/sub thread
    # crmsync never uses, and it made a SIGTERM wait up to a minute: RQ sends UNSUBSCRIBE before it
    # stops the thread, and when the reply reaches the thread first, redis-py (>= 8.2) waits for a new
    # subscription for the thread's 60 s poll while stop() joins it. No thread, no wait (and one Redis
    # connection less per worker): tests/test_worker_dyno_processes.py.
    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass

    def start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        # RQ's own, with a scheduler that rides out outages too (RQ builds its class in this method).
        self.scheduler = OutageTolerantScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.reconnect_backoff = self.reconnect_backoff
        self._riding_out(self.scheduler.acquire_locks)
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def _riding_out(self, step: Callable[..., T], *args: Any) -> T:
        """Run `step`; while Redis is unavailable, wait for it and run the step again."""
        while True:
            try:
                return step(*args)
            except REDIS_UNAVAILABLE as exc:
                if not self._wait_for_redis(exc):
                    raise StopRequested() from None

    def _wait_for_redis(self, cause: BaseException) -> bool:
        return wait_for_redis(self.connection, self.reconnect_backoff, self._stopping, cause, "worker")

    def _stopping(self) -> bool:
        return self.stop_requested

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        # RQ stops an idle worker by raising StopRequested from the signal handler, wherever the main
        # thread is; raised inside code that swallows exceptions (a connection's `__del__` during an
        # outage's reconnects) it is lost. The flag is what the outage wait polls: it stops anyway.
        self.ask_to_stop()
        grace = self.shutdown_grace_seconds
        # A job whose alarm RQ has not set yet gets one that goes off within the grace too.
        self.death_penalty_class = _alarm_by(time.monotonic() + grace)
        # The executions in memory, not in Redis: a shutdown during an outage must not need Redis.
        if self.executions:
            # Re-arm the job's timeout alarm (RQ's death penalty uses SIGALRM) to fire sooner.
            remaining = signal.alarm(0)
            signal.alarm(min(remaining, grace) if remaining else grace)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker only runs maintenance between blocking dequeues, which RQ makes ~400 s
        # long: cap them at the maintenance interval so abandoned jobs are found in time.
        return max(1, min(int(self.maintenance_interval), self.worker_ttl - 15))

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        with performing(self.runtime):
            return bool(super().perform_job(job, queue, *args, **kwargs))

    def record_unhandled_failure(
        self, job: Job, exc_type: type[BaseException], exc_value: BaseException, tb: object
    ) -> bool:
        """RQ exception handler for failures `apply_event` never sees: the job ran past its timeout
        (or the shutdown grace), its worker died (found by maintenance), or a bug. Records the attempt
        on the job and in the job metrics, like apply_event does for its own failures."""
        if isinstance(exc_value, SyncError):
            return True  # apply_event recorded it already
        if isinstance(exc_value, REDIS_UNAVAILABLE):
            failure_class = "redis_unavailable"  # Redis went away inside the job and was back at once
        else:
            failure_class = _UNHANDLED_CLASSES.get(exc_type.__name__, "unexpected")
        # The exception's type only: the message of an unforeseen error may echo event data.
        add_attempt(job, failure_class, exc_type.__name__)
        job.save_meta()
        outcome = "retried" if will_retry(job) else "failed"
        record_job(job.connection, str(job.meta.get("type", "unknown")), outcome, 0.0)
        if outcome == "failed" and job.meta.get("type") == ERASURE_REQUESTED:
            # An erasure is a legal obligation: one that timed out or was abandoned for good must show
            # as failed in the audit trail (and on the dashboard), not sit there as pending.
            audit = ErasureAudit.of(job.connection, self.runtime.settings)
            audit.failed(str(job.meta.get("webhook_id", "")), str(job.meta.get("external_id", "")),
                         failure_class, exc_type.__name__)  # fmt: skip
        return True

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # An in-process job gets no heartbeats while it runs, so its entry must last the whole job;
        # RQ's default adds 60 s, which delays the recovery of a killed worker's job by a minute.
        return int(job.timeout or Queue.DEFAULT_TIMEOUT) + ABANDONED_AFTER_TIMEOUT_SECONDS


_UNHANDLED_CLASSES = {
    "JobTimeoutException": "timeout",
    "AbandonedJobError": "abandoned",
    "MissingPayload": "payload_missing",  # the job's payload key was deleted outside crmsync
}


def build_worker(
    settings: Settings, redis: Redis, name: str | None = None, worker_class: type[SyncWorker] = SyncWorker
) -> SyncWorker:
    """A worker on the app's queue, owning the runtime (clients) its jobs use; `close` it when done."""
    worker = worker_class(
        [app_queue(redis, settings.queue_name)],
        connection=redis,
        serializer=JSONSerializer,
        name=name,
        maintenance_interval=settings.worker_maintenance_interval,
    )
    worker.runtime = Runtime.build(settings, redis)
    worker.push_exc_handler(worker.record_unhandled_failure)
    worker.shutdown_grace_seconds = settings.worker_shutdown_grace_seconds
    worker.reconnect_backoff = Backoff(cap=settings.redis_reconnect_max_seconds)
    # RQ's own backoff while waiting for a job, which it keeps apart from the rest of the loop.
    worker.max_connection_wait_time = settings.redis_reconnect_max_seconds
    return worker


def run_worker(settings: Settings, redis: Redis, burst: bool = False, with_scheduler: bool = True) -> bool:
    """Work until stopped (or until the queue is empty with `burst`)."""
    worker = build_worker(settings, redis)
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=rq_logging_level())


def rq_logging_level() -> str:
    """RQ logs four lines per job at INFO; apply_event logs the one that matters (identifiers, outcome,
    duration), so RQ's own are kept for DEBUG."""
    return "DEBUG" if logging.getLogger().level <= logging.DEBUG else "WARNING"
