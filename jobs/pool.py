"""A worker dyno's processes: RQ's worker pool, forking WORKER_CONCURRENCY in-process workers.

A platform call waits 50-100 ms for the API, so one worker process applies ~10 events/s. The pool
runs several `SyncWorker` processes side by side, each one job at a time, each with its own Redis
connection and kept-alive API sessions; per-customer order still rests on the ledger's lock, and a
dead child's job is recovered by its siblings' maintenance like any dead worker's (jobs/worker.py).

The parent imports everything the jobs use and freezes those objects out of the garbage collector
before it forks, so the children share that memory instead of each holding a copy (PSS per child is
in docs/benchmarks.md). It is RQ's `WorkerPool`: it relays SIGTERM to the children (each finishes or
stops its job within the shutdown grace, under Heroku's 30 s), and restarts a child that dies.
"""

from __future__ import annotations

import gc
import signal
from multiprocessing import get_context
from multiprocessing.process import BaseProcess

from redis import Redis
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

from crmsync.core.redis_conn import connect
from crmsync.core.settings import Settings

from . import tasks  # noqa: F401  # imported here, before the fork, so the children share it
from .worker import SyncWorker, rq_logging_level, run_worker

__all__ = ["SyncWorkerPool", "run_pool"]


class SyncWorkerPool(WorkerPool):
    """RQ's worker pool whose children are crmsync workers built from the app's settings."""

    def __init__(self, settings: Settings, redis: Redis, with_scheduler: bool = True) -> None:
        super().__init__(
            [settings.queue_name],
            connection=redis,
            num_workers=settings.worker_concurrency,
            worker_class=SyncWorker,
            serializer=JSONSerializer,
        )
        self.settings = settings
        self.with_scheduler = with_scheduler

    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> BaseProcess:
        # RQ's own child builds a bare worker from the pool's arguments; ours is the app's worker.
        process: BaseProcess = get_context("fork").Process(
            target=_work, args=(self.settings, burst, self.with_scheduler), name=f"crmsync worker {name}"
        )
        return process

    def start(self, burst: bool = False, logging_level: str = "INFO") -> None:
        # Everything imported so far is shared with the children; the collector must not write to
        # it (its bookkeeping would copy each page into every child).
        gc.freeze()
        super().start(burst=burst, logging_level=rq_logging_level())


def run_pool(settings: Settings, redis: Redis, burst: bool = False, with_scheduler: bool = True) -> None:
    """Run WORKER_CONCURRENCY workers until stopped (or until the queue is empty with `burst`)."""
    SyncWorkerPool(settings, redis, with_scheduler).start(burst=burst)


def _work(settings: Settings, burst: bool, with_scheduler: bool) -> None:
    """A pool child: one worker with its own Redis connection and API sessions."""
    # The child inherits the pool's signal handlers until the worker installs its own: a SIGTERM in
    # between must end this child, not make it signal its siblings as the pool does.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    run_worker(settings, connect(settings.redis_url), burst=burst, with_scheduler=with_scheduler)
