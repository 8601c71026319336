"""A worker dyno's process: its share of WORKER_CONCURRENCY crmsync workers as threads (a dyno of
several processes forks one of these per share: jobs/dyno_processes.py).

A platform call waits 50-100 ms for the API, so one worker applies ~10 events/s. The dyno runs several
in-process RQ workers side by side, each one job at a time with its own kept-alive API sessions;
per-customer order still rests on the ledger's lock, and the jobs of a dyno that dies are recovered
by the maintenance of another worker, as for any dead worker (jobs/worker.py).

Threads, not RQ's worker pool of one forked process per worker: both were measured
(docs/benchmarks.md). While waiting on the API the threads share one warm interpreter; 25 processes
each wake to cold caches, and spent twice the CPU per event, which on a busy machine halved the
throughput (0.41 vs 0.84 of the baseline in the same run). One process also holds a fraction of the
memory; a few processes of threads are for when one interpreter lock is the limit.

In a thread RQ cannot use signals: a job's timeout is raised in its thread by one watchdog thread (as
RQ's TimerDeathPenalty does, without its timer thread per job), and the dyno's main thread handles
SIGTERM: every worker finishes its job and stops; a job still running after the shutdown grace is
stopped as a timeout (and retried), so the process exits within Heroku's 30 s.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import cast

from redis import Redis
from redis.client import Pipeline
from rq.exceptions import StopRequested
from rq.job import Job
from rq.timeouts import BaseDeathPenalty, JobTimeoutException

from crmsync.core.settings import Settings

from .redis_outage import OutageTolerantScheduler
from .worker import SyncWorker, build_worker, rq_logging_level

__all__ = ["ThreadWorker", "WorkerDyno", "run_dyno"]

log = logging.getLogger("crmsync.jobs")

# An idle worker notices a stop request once its blocking dequeue returns: at most this long.
IDLE_DEQUEUE_SECONDS = 1
# The scheduler thread notices a stop within its interval (1 s).
STOPPED_SCHEDULER_SECONDS = 2
# Heroku sends SIGKILL 30 s after SIGTERM: the dyno exits by then, whatever is still running (its jobs
# are then recovered as abandoned, like those of a dyno that crashed).
EXIT_BY_SECONDS = 28
# How long a thread may hold the interpreter lock while another waits for it (Python's default: 5 ms).
# A worker whose API answer has arrived waits for the lock, not for the API; with a dozen threads in a
# process, shorter turns hand it over sooner. Same run, 50 ms API, 25 workers in 2 processes: 199.9
# and 194.3 events/s at 0.5 ms against 189.9 and 189.0 at 5 ms, and less CPU per event (4.1-4.3 ms
# against 4.5-4.6: docs/benchmarks.md).
THREAD_SWITCH_INTERVAL_SECONDS = 0.0005


class WatchdogDeathPenalty(BaseDeathPenalty):
    """A job's timeout in a worker thread: RQ's TimerDeathPenalty raises the exception in the job's
    thread the same way, but starts a timer thread for every job; here one watchdog per process
    keeps every running job's deadline."""

    def setup_death_penalty(self) -> None:
        if self._timeout > 0:
            self._deadline = _WATCHDOG.watch(threading.get_ident(), self._timeout, self._exception)

    def cancel_death_penalty(self) -> None:
        if self._timeout > 0:
            _WATCHDOG.cancel(self._deadline)


class _Watchdog:
    """One thread that raises each overdue job's timeout exception in the thread running the job."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._deadlines: list[tuple[float, int, int, type[BaseException]]] = []
        self._cancelled: set[int] = set()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, thread_id: int, seconds: float, exception: type[BaseException]) -> int:
        with self._lock:
            key = next(self._order)
            heapq.heappush(self._deadlines, (time.monotonic() + seconds, key, thread_id, exception))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="job-timeouts", daemon=True)
                self._thread.start()
            if self._deadlines[0][1] == key:
                self._lock.notify()  # the earliest deadline now: the watchdog must wake up sooner
            return key

    def cancel(self, key: int) -> None:
        with self._lock:
            self._cancelled.add(key)

    def _run(self) -> None:
        cancelled = self._cancelled
        with self._lock:
            while True:
                now = time.monotonic()
                while self._deadlines and (
                    self._deadlines[0][1] in self._cancelled or self._deadlines[0][0] <= now
                ):
                    _, key, thread_id, exception = heapq.heappop(self._deadlines)
                    if key in cancelled:
                        cancelled.discard(key)
                    else:
                        _raise_in_thread(thread_id, exception)
                self._lock.wait(self._deadlines[0][0] - now if self._deadlines else None)


_WATCHDOG = _Watchdog()


class ThreadWorker(SyncWorker):
    """A SyncWorker that runs in a thread of the dyno: timeouts by the watchdog, signals by the dyno."""

    death_penalty_class = WatchdogDeathPenalty

    def install_signal_handlers(self) -> None:
        pass  # only a process's main thread may; the dyno's handles SIGTERM for all its workers

    def request_stop_after_job(self) -> None:
        """Finish the running job (if any), then stop; an idle worker stops at its next dequeue."""
        self.ask_to_stop()

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        # RQ's dequeue loop heartbeats before each blocking dequeue: where an idle worker stops.
        if self.stop_requested and self.get_current_job_id() is None and pipeline is None:
            raise StopRequested()
        super().heartbeat(timeout, pipeline)

    def handle_warm_shutdown_request(self) -> None:
        pass  # the dyno stops jobs past the grace (SyncWorker's alarm is for a main thread only)

    @property
    def dequeue_timeout(self) -> int:
        return IDLE_DEQUEUE_SECONDS

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # A thread notices its job's timeout only once the API call it waits on returns: the job
        # counts as abandoned only after that too.
        return super().get_heartbeat_ttl(job, working_time) + int(self.runtime.settings.api_timeout_seconds)


class ThreadScheduler(OutageTolerantScheduler):
    """RQ's scheduler (it moves due retries onto the queue) as a thread of the dyno.

    A worker forks it as a process when it takes the scheduler lock, which from a process with
    threads could copy a lock another thread holds into a child that then hangs: the lock changes
    hands when a dyno dies, at any time. As a thread it takes the lock whenever it is free."""

    def install_signal_handlers(self) -> None:
        pass  # the dyno's main thread handles signals

    @property
    def should_reacquire_locks(self) -> bool:
        # RQ retries a lock it did not get after 10 minutes; another dyno's lock expires in ~1.
        return bool(self.acquired_locks != self.scheduled_queue_names)


class WorkerDyno:
    """`settings.worker_concurrency` ThreadWorkers on the app's queue, stopped together on SIGTERM."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        # One connection pool for all the workers: each thread holds a connection only while it
        # waits on Redis (an idle one: in its blocking dequeue).
        self.redis = redis
        self.workers = [
            cast(ThreadWorker, build_worker(settings, self.redis, worker_class=ThreadWorker))
            for _ in range(settings.worker_concurrency)
        ]
        for worker in self.workers:
            # A thread notices its job's timeout only once the API call it waits on returns: the
            # customer's lock must outlast that call too.
            worker.runtime.ledgers.lock_margin_seconds += settings.api_timeout_seconds
        self._stop = threading.Event()
        self.scheduler: ThreadScheduler | None = None

    def work(self, burst: bool = False, with_scheduler: bool = True) -> None:
        """Run every worker until stopped (or until the queue is empty, with `burst`)."""
        level = rq_logging_level()
        # No worker schedules: RQ would fork its scheduler from this process of threads (on taking
        # the lock, in any maintenance pass). The dyno's scheduler thread moves due jobs instead.
        threads = [
            threading.Thread(
                target=worker.work,
                kwargs={"burst": burst, "with_scheduler": False, "logging_level": level},
                name=f"crmsync-worker-{index}",
                daemon=True,
            )
            for index, worker in enumerate(self.workers)
        ]
        scheduling = None
        if with_scheduler:
            first = self.workers[0]
            self.scheduler = ThreadScheduler(first.queues, connection=self.redis, serializer=first.serializer)
            self.scheduler.reconnect_backoff = first.reconnect_backoff
            scheduling = threading.Thread(target=self.scheduler.work, name="crmsync-scheduler", daemon=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        for thread in [*threads, *([scheduling] if scheduling else [])]:
            thread.start()
        while any(thread.is_alive() for thread in threads) and not self._stop.wait(0.2):
            pass
        if self._stop.is_set():
            self._shut_down(threads)
        if self.scheduler is not None and scheduling is not None:
            self.scheduler._stop_requested = True  # a burst ended, or a stop
            scheduling.join(STOPPED_SCHEDULER_SECONDS)
        for worker in self.workers:
            worker.runtime.close()

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("worker dyno stopping", extra={"event": "worker_stopping"})
        for worker in self.workers:
            worker.request_stop_after_job()
        if self.scheduler is not None:
            self.scheduler.ask_to_stop()
        self._stop.set()

    def _shut_down(self, threads: list[threading.Thread]) -> None:
        """Let running jobs finish within the grace; stop the rest as timeouts (they are retried).

        A thread waiting on the API notices the stop when that call returns (a thread cannot be
        interrupted the way SIGALRM interrupts the main thread), at most API_TIMEOUT_SECONDS later."""
        stopped_at = time.monotonic()
        grace_ends = stopped_at + self.settings.worker_shutdown_grace_seconds
        for thread in threads:
            thread.join(max(0.0, grace_ends - time.monotonic()))
        for worker, thread in zip(self.workers, threads, strict=True):
            if thread.is_alive() and worker.get_current_job_id() is not None:
                _raise_in(thread, JobTimeoutException)
        for thread in threads:
            thread.join(max(0.0, stopped_at + EXIT_BY_SECONDS - time.monotonic()))


def _raise_in(thread: threading.Thread, exception: type[BaseException]) -> None:
    """Raise `exception` in `thread` at its next Python instruction, as RQ's TimerDeathPenalty does."""
    if thread.ident is not None:
        _raise_in_thread(thread.ident, exception)


def _raise_in_thread(thread_id: int, exception: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_long(thread_id), ctypes.py_object(exception))


def run_dyno(settings: Settings, redis: Redis, burst: bool = False, with_scheduler: bool = True) -> None:
    """Run WORKER_CONCURRENCY workers until stopped (or until the queue is empty with `burst`)."""
    sys.setswitchinterval(THREAD_SWITCH_INTERVAL_SECONDS)
    WorkerDyno(settings, redis).work(burst=burst, with_scheduler=with_scheduler)
