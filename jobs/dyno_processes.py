"""A worker dyno of several processes, each running its share of WORKER_CONCURRENCY as threads.

One process of threads shares one interpreter lock: where a job's Python costs more than a core can
give (a slow or busy machine: ~10 ms of CPU per event at 84 events/s filled a core,
docs/benchmarks.md), more threads wait for the lock, not for the API. The dyno then runs a few
processes, forked after every import so that the code and the imported modules stay shared pages,
each a WorkerDyno (jobs/dyno.py) of its share of the threads: 25 workers on two cores are two
processes of 13 and 12. The parent only forks, relays signals and restarts a process that dies, as
gunicorn's arbiter and RQ's worker pool do.

Every guarantee is the threads' own: per-customer order rests on the ledger's lock, whichever
process holds the job; a process that dies leaves its jobs to the maintenance of the others (and of
its replacement); on SIGTERM each process lets its running jobs finish within the grace and exits by
Heroku's 30 s, and the parent exits once they have.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from dataclasses import replace
from types import FrameType

from crmsync.core.redis_conn import connect
from crmsync.core.settings import Settings, memory_limit_bytes

from .dyno import run_dyno
from .worker import run_worker

__all__ = ["dyno_processes", "run_worker_dyno", "threads_per_process"]

log = logging.getLogger("crmsync.jobs")

# A process is worth its memory and cold caches once it has this many workers to run: below it, one
# process of threads stays within a core (a job's Python is ~4-10 ms of CPU per ~100 ms of API waits).
WORKERS_PER_PROCESS = 8
# A process that keeps dying is restarted at most this often.
RESTART_DELAY_SECONDS = 1.0
RELAYED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def dyno_processes(settings: Settings, cpus: int | None = None) -> int:
    """How many processes run the dyno's workers: WORKER_PROCESSES if set, else one per
    WORKERS_PER_PROCESS workers, at most one per CPU this process may run on."""
    if settings.worker_processes:
        return min(settings.worker_processes, settings.worker_concurrency)
    available = cpus if cpus is not None else len(os.sched_getaffinity(0))
    wanted = -(-settings.worker_concurrency // WORKERS_PER_PROCESS)
    return max(1, min(available, wanted))


def threads_per_process(concurrency: int, processes: int) -> list[int]:
    """`concurrency` workers split as evenly as they go over `processes` processes (25 over 2: 13, 12)."""
    share, extra = divmod(concurrency, processes)
    return [share + (1 if index < extra else 0) for index in range(processes)]


def run_worker_dyno(settings: Settings, burst: bool = False, with_scheduler: bool = True) -> None:
    """Run the dyno's WORKER_CONCURRENCY workers until stopped (or the queue is empty, with `burst`)."""
    # Redis unreachable at start fails the command in one line (the CLI's), as one worker does, before
    # the start line and before any fork: processes of a dyno would fail and be restarted in a loop.
    probe = connect(settings.redis_url)
    probe.ping()
    probe.close()
    processes = dyno_processes(settings)
    _log_concurrency(settings, processes)
    if processes == 1:
        _run_share(settings, settings.worker_concurrency, burst, with_scheduler)
        return
    shares = threads_per_process(settings.worker_concurrency, processes)
    _Parent(settings, shares, burst, with_scheduler).run()


def _log_concurrency(settings: Settings, processes: int) -> None:
    """One line at start: how many workers, in how many processes, and what chose the number."""
    memory = memory_limit_bytes()
    log.info(
        "worker dyno starting",
        extra={
            "event": "worker_dyno_started",
            "workers": settings.worker_concurrency,
            "processes": processes,
            "chosen_by": "memory" if settings.worker_concurrency_derived else "WORKER_CONCURRENCY",
            "memory_limit_mb": memory >> 20 if memory else None,
        },
    )


def _run_share(settings: Settings, workers: int, burst: bool, with_scheduler: bool) -> None:
    """`workers` workers in this process: threads of a WorkerDyno, or one RQ worker in the main thread
    (which, like RQ's worker pool, ignores the parent's relay of a SIGTERM it got a moment before)."""
    share = replace(settings, worker_concurrency=workers)
    run = run_dyno if workers > 1 else run_worker
    run(share, connect(settings.redis_url), burst=burst, with_scheduler=with_scheduler)


class _Parent:
    """Forks one process per share, relays SIGTERM and SIGINT to them, and restarts one that dies
    (unless the dyno is stopping, or a burst process ended because the queue was empty)."""

    def __init__(self, settings: Settings, shares: list[int], burst: bool, with_scheduler: bool) -> None:
        self.settings = settings
        self.shares = shares
        self.burst = burst
        self.with_scheduler = with_scheduler
        self.children: dict[int, int] = {}  # pid -> index of its share
        self.stopping = False

    def run(self) -> None:
        for signum in RELAYED_SIGNALS:
            signal.signal(signum, self._relay)
        # Objects that exist now stay shared with every child: the collector would otherwise touch
        # (and so copy) each page of them in every process.
        gc.freeze()
        for index in range(len(self.shares)):
            self._fork(index)
        while self.children:
            pid, status = os.wait()  # a relayed signal interrupts it, and it resumes (PEP 475)
            if pid not in self.children:
                continue
            index = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping or (self.burst and code == 0):
                continue
            log.warning(
                "worker dyno process ended; starting another",
                extra={"event": "worker_process_restarted", "exit_code": code, "pid": pid},
            )
            time.sleep(RESTART_DELAY_SECONDS)
            if not self.stopping:
                self._fork(index)

    def _fork(self, index: int) -> None:
        # Signals wait while the child is forked: the parent's relay must know every child, and a
        # child must not run the parent's handler (it would signal its siblings).
        signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED_SIGNALS)
        pid = os.fork()
        if pid:
            self.children[pid] = index
            signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED_SIGNALS)
            return
        code = 1
        try:
            for signum in RELAYED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)  # until the worker installs its own
            signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED_SIGNALS)
            # One scheduler per dyno is enough (RQ's lock lets one run per queue in any case).
            scheduler = self.with_scheduler and index == 0
            _run_share(self.settings, self.shares[index], self.burst, scheduler)
            code = 0
        except BaseException:
            log.exception("worker dyno process failed", extra={"event": "worker_process_failed"})
        finally:
            logging.shutdown()
            os._exit(code)

    def _relay(self, signum: int, frame: FrameType | None) -> None:
        """Heroku signals every process of the dyno; `kill` of the parent alone must reach them too."""
        self.stopping = True
        log.info("worker dyno stopping", extra={"event": "worker_stopping"})
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass  # it has just ended
