"""The worker process: RQ's in-process worker with the JSON serializer and crmsync's runtime.

Jobs run in the worker process itself (no fork per job), so the HTTP sessions to the platform stay
open across jobs and parsed documents are reused. Crash safety does not rest on the fork: a killed
worker's job is found by another worker's maintenance pass (every WORKER_MAINTENANCE_INTERVAL s) and
retried, and the per-customer ledger makes the retry's effect happen once.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import SimpleWorker

from crmsync.core.counters import record_job
from crmsync.core.errors import SyncError
from crmsync.core.events import ERASURE_REQUESTED
from crmsync.core.queue import app_queue, will_retry
from crmsync.core.settings import Settings
from crmsync.erasure.audit import ErasureAudit

from .attempts import add_attempt
from .runtime import Runtime, performing

__all__ = ["SyncWorker", "run_worker", "SHUTDOWN_GRACE_SECONDS"]

# Heroku sends SIGKILL 30 s after SIGTERM; a job still running after this is stopped (as a timeout,
# which is retried) so the worker records its state and exits before the kill.
SHUTDOWN_GRACE_SECONDS = 20
# A running job's registry entry expires this long after its timeout: then it counts as abandoned.
ABANDONED_AFTER_TIMEOUT_SECONDS = 5


class SyncWorker(SimpleWorker):
    """An in-process RQ worker that stops a running job within Heroku's shutdown window, and hands
    its runtime (settings and clients) to each job it performs."""

    runtime: Runtime

    shutdown_grace_seconds = SHUTDOWN_GRACE_SECONDS
    # RQ sends its worker heartbeat as three separate commands several times per job, and checks for
    # `rq suspend` before every job: 10 of a job's ~24 Redis round trips (docs/benchmarks.md). The
    # worker key lives for minutes, so one pipelined heartbeat every few seconds keeps it just as alive.
    heartbeat_every_seconds = 5.0
    suspension_check_every_seconds = 1.0
    _suspension_checked_at = 0.0

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        recent = self.last_heartbeat is not None and (
            (now() - self.last_heartbeat).total_seconds() < self.heartbeat_every_seconds
        )
        if timeout is None and recent:
            return
        with self.connection.pipeline(transaction=False) as batched:
            super().heartbeat(timeout, batched)
            batched.execute()

    def check_for_suspension(self, burst: bool) -> None:
        if time.monotonic() - self._suspension_checked_at < self.suspension_check_every_seconds:
            return
        self._suspension_checked_at = time.monotonic()
        super().check_for_suspension(burst)

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        if self.get_current_job_id():
            # Re-arm the job's timeout alarm (RQ's death penalty uses SIGALRM) to fire sooner.
            grace = self.shutdown_grace_seconds
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


_UNHANDLED_CLASSES = {"JobTimeoutException": "timeout", "AbandonedJobError": "abandoned"}


def build_worker(settings: Settings, redis: Redis, name: str | None = None) -> SyncWorker:
    """A worker on the app's queue, owning the runtime (clients) its jobs use; `close` it when done."""
    worker = SyncWorker(
        [app_queue(redis, settings.queue_name)],
        connection=redis,
        serializer=JSONSerializer,
        name=name,
        maintenance_interval=settings.worker_maintenance_interval,
    )
    worker.runtime = Runtime.build(settings, redis)
    worker.push_exc_handler(worker.record_unhandled_failure)
    worker.shutdown_grace_seconds = settings.worker_shutdown_grace_seconds
    return worker


def run_worker(settings: Settings, redis: Redis, burst: bool = False, with_scheduler: bool = True) -> bool:
    """Work until stopped (or until the queue is empty with `burst`)."""
    worker = build_worker(settings, redis)
    # RQ logs four lines per job at INFO; apply_event logs the one that matters (identifiers, outcome,
    # duration), so RQ's own are kept for DEBUG.
    rq_level = "DEBUG" if logging.getLogger().level <= logging.DEBUG else "WARNING"
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=rq_level)
