"""Riding out a Redis outage: the worker and its scheduler wait for Redis, reconnect and go on.

Heroku Redis restarts for maintenance and fails over; a self-hosted one restarts or is killed. RQ's
own work loop survives an outage only while it waits for a job: anywhere else a connection error
ends the process, with the running job left "started" in Redis. The worker (jobs/worker.py) runs
every step of its loop through `wait_for_redis` instead, and a job cut off by the outage is settled
once Redis is back: its outcome, if RQ had recorded it, stands; otherwise it is queued to run again
(the per-customer ledger makes a second run's effect happen once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis.exceptions
from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus

from crmsync.core import rq_internals

from .attempts import add_attempt

__all__ = [
    "REDIS_UNAVAILABLE",
    "Backoff",
    "wait_for_redis",
    "settle_interrupted_job",
    "OutageTolerantScheduler",
]

# What Redis being away looks like to a client: refused or dropped connections (including LOADING
# while a restarted server reads its append-only file back, a ConnectionError subclass), socket
# timeouts, and a former primary that turned read-only replica during a failover.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)

# Statuses RQ writes together with the end of an execution, in one transaction: if the job has one
# of them, its outcome was recorded before Redis went away.
_SETTLED = {
    JobStatus.FINISHED,
    JobStatus.FAILED,
    JobStatus.SCHEDULED,
    JobStatus.STOPPED,
    JobStatus.CANCELED,
    JobStatus.DEFERRED,
}


@dataclass(frozen=True)
class Backoff:
    """Seconds between attempts to reach Redis: doubling from `first`, never more than `cap`.

    The cap bounds how long after Redis is back the worker notices; the wait itself has no limit,
    since a worker that exits cannot do better than one that waits (REDIS_RECONNECT_MAX_SECONDS).
    """

    first: float = 0.5
    cap: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = min(self.first, self.cap)
        while True:
            yield delay
            delay = min(delay * 2, self.cap)


def wait_for_redis(
    connection: Redis, backoff: Backoff, stopping: Callable[[], bool], cause: BaseException, who: str
) -> bool:
    """Wait until Redis answers a PING again (True), or until `stopping()` says to give up (False).

    Logged on `crmsync.<who>` (worker, scheduler) at each attempt, with how long Redis has been away."""
    log = logging.getLogger(f"crmsync.{who}")
    started = time.monotonic()

    def down_for() -> dict[str, object]:
        return {"duration_ms": round((time.monotonic() - started) * 1000)}

    log.warning("redis unavailable, waiting for it", extra={"event": "redis_unavailable",
                                                            "reason": type(cause).__name__})  # fmt: skip
    delays = backoff.delays()
    delay = next(delays)
    while _pause(delay, stopping):
        try:
            connection.ping()
        except REDIS_UNAVAILABLE as exc:
            delay = next(delays)
            extra = {"event": "redis_unavailable", "reason": type(exc).__name__, "retry_in_s": delay}
            log.warning("redis still unavailable", extra={**extra, **down_for()})
            continue
        log.warning("redis is back", extra={"event": "redis_back", **down_for()})
        return True
    return False


def _pause(seconds: float, stopping: Callable[[], bool]) -> bool:
    """Sleep `seconds` in short slices, so that a shutdown request is honoured at once; False if so."""
    deadline = time.monotonic() + seconds
    while not stopping():
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.1))
    return False


def settle_interrupted_job(job: Job, queue: Queue) -> str:
    """A Redis outage cut `job` off (before, during or after it ran); Redis is back. Keep its outcome
    if RQ recorded one, else queue it to run again at the front; returns "recorded" or "requeued".

    Run again (Redis went away again meanwhile), it finds the job queued and leaves it so.
    """
    connection = queue.connection
    try:
        status: JobStatus | None = job.get_status(refresh=True)
    except InvalidJobOperation:
        status = None  # the job is gone (deleted meanwhile): nothing to settle
    if status is None or status in _SETTLED:
        return "recorded"
    if status == JobStatus.QUEUED and queue.get_job_position(job.id) is not None:
        return "recorded"  # an earlier settle, or RQ's own retry, queued it already
    fresh = queue.job_class.fetch(job.id, connection=connection, serializer=queue.serializer)
    # The outage was not the event's fault, but it is one attempt: operators see why it ran twice.
    add_attempt(fresh, "redis_unavailable", "Redis was unavailable while the job ran")
    fresh.save_meta()
    with connection.pipeline() as pipeline:
        # The execution cut off (RQ forgets it in memory before it writes its end, so the worker may
        # no longer know it, and its hash may have expired) would stay in the started registry.
        rq_internals.drop_started_entries(pipeline, connection, queue, job.id)
        pipeline.lrem(queue.intermediate_queue_key, 0, job.id)
        fresh.set_status(JobStatus.QUEUED, pipeline=pipeline)
        queue.push_job_id(job.id, pipeline=pipeline, at_front=True)
        pipeline.execute()
    return "requeued"


class OutageTolerantScheduler(rq_internals.SchedulerHooks):
    """RQ's scheduler (moves due retries onto the queue), waiting out Redis outages instead of dying."""

    reconnect_backoff = Backoff()
    _register_again = False

    def work(self) -> None:
        self.install_signal_handlers()
        self._riding_out(self.register_birth)
        while not self.stop_requested:
            self._riding_out(self._schedule_due_jobs)
            _pause(self.interval, self._stopping)
        try:
            self.stop()
        except REDIS_UNAVAILABLE:
            pass  # its locks and key expire on their own

    def _schedule_due_jobs(self) -> None:
        if self._register_again:
            # Its description lives `interval` + 60 s: a longer outage let it expire.
            self.register_birth()
            self._register_again = False
        if self.should_reacquire_locks:
            self.acquire_locks()
        self.heartbeat()
        self.enqueue_scheduled_jobs()

    def _stopping(self) -> bool:
        return bool(self.stop_requested)

    def _riding_out(self, step: Callable[[], object]) -> None:
        while not self.stop_requested:
            try:
                step()
                return
            except REDIS_UNAVAILABLE as exc:
                self._register_again = True
                wait_for_redis(self.connection, self.reconnect_backoff, self._stopping, exc, "scheduler")
