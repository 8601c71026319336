"""RQ's own cost per job on this machine: the floor under any RQ-based drain.

A backlog of no-op jobs (JSON serializer, the same job options as crmsync's) drained by crmsync's
`SyncWorker` in this process, without the scheduler. Whatever crmsync does per event comes on top.

    python -m bench.rq_floor [--jobs 3000]
"""

from __future__ import annotations

import argparse
import time

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from bench.stack import bench_redis, print_table
from jobs.worker import SyncWorker

__all__ = ["noop"]


def noop(payload: dict[str, str]) -> dict[str, str]:
    """A job that does nothing, so only RQ's bookkeeping is measured."""
    return {"outcome": "noop"}


def drain(redis: Redis, worker_class: type[SimpleWorker], jobs: int) -> float:
    """Seconds for `worker_class` to drain `jobs` no-op jobs."""
    redis.flushdb()
    queue = Queue("floor", connection=redis, serializer=JSONSerializer)
    payload = {"webhook_id": "w", "type": "customer.updated", "timestamp": "2026-11-22T10:00:00+00:00"}
    with redis.pipeline() as pipe:
        for n in range(jobs):
            queue.enqueue("bench.rq_floor.noop", {**payload, "n": str(n)}, result_ttl=86_400,
                          failure_ttl=30 * 86_400, timeout=60, pipeline=pipe)  # fmt: skip
        pipe.execute()
    worker = worker_class([queue], connection=redis, serializer=JSONSerializer)
    started = time.perf_counter()
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000)
    jobs = parser.parse_args().jobs
    rows = []
    with bench_redis() as redis_url:
        redis = Redis.from_url(redis_url)
        for worker_class in (SimpleWorker, SyncWorker):
            seconds = drain(redis, worker_class, jobs)
            rows.append((worker_class.__name__, jobs, f"{seconds:.2f}", f"{jobs / seconds:.0f}",
                         f"{seconds / jobs * 1000:.2f}"))  # fmt: skip
    print_table("RQ's floor: no-op jobs", ("worker", "jobs", "seconds", "jobs/s", "ms/job"), rows)


if __name__ == "__main__":
    main()
