"""Freshness: from a webhook's 2xx to the answer of the platform write that applied it, at a steady rate.

    python -m bench.freshness                    # the published run: 20 events/s for 2 minutes

The sandbox answers every call after 50 ms; the web process under gunicorn; one worker dyno with
default settings. 200 customers are created first; then signed Standard Webhooks deliveries update
them round-robin (each customer every 10 s) at a steady 20 a second, each sent at its own moment
(not in bursts). Each event's freshness is its job's `ended_at` minus its `enqueued_at` (both in
Redis: the enqueue is the 2xx's own write, the end follows the write's answer by the ledger's commit),
so the figure errs on the long side. `/metrics`' `crmsync_event_freshness_seconds` histogram counts
the same events (checked below).

REDIS_URL's database is flushed; without it an embedded redis-server is started on loopback.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import statistics
import time

import requests
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from bench.stack import (
    CUSTOMERS_TOKEN,
    PERSONAL_DATA_TOKEN,
    SECRET,
    WEBHOOK_SECRET,
    bench_redis,
    flush,
    free_port,
    platform_env,
    print_table,
    start,
    stop,
    wait_ready,
)
from crmsync.cli.sender import signed_request
from crmsync.core.keys import job_id_for
from sandbox.config import SandboxConfig
from sandbox.server import start_in_thread

CUSTOMERS = 200
CREATED_AT = "2026-11-22T09:00:00+00:00"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20, help="events per second")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--api-latency-ms", type=int, default=50)
    options = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    sandbox = start_in_thread(
        SandboxConfig(CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN, api_latency_ms=options.api_latency_ms)
    )
    queue = f"bench_{secrets.token_hex(4)}"
    with bench_redis() as redis_url:
        flush(redis_url)
        port = free_port()
        env = {
            "REDIS_URL": redis_url,
            "QUEUE_NAME": queue,
            "PORT": str(port),
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            **platform_env(sandbox.customers_url, sandbox.personal_data_url),
            "LOG_LEVEL": "WARNING",
        }
        os.environ.pop("WORKER_CONCURRENCY", None)  # the dyno's default, whatever the bench's environment
        web = start(
            ["gunicorn", "--config", "python:crmsync.server.gunicorn_conf", "crmsync.web:create_app()"], env
        )
        dyno = start(["crmsync", "worker"], env)
        redis = Redis.from_url(redis_url)
        url = f"http://127.0.0.1:{port}/webhooks/crm"
        session = requests.Session()

        def deliver(webhook_id: str, body: dict[str, object]) -> None:
            headers, data = signed_request(SECRET, body, webhook_id)
            assert session.post(url, data=data, headers=headers, timeout=30).status_code == 202

        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", web)
            for n in range(CUSTOMERS):
                data = {"external_id": f"fresh-{n}", "name": f"Customer {n}"}
                deliver(f"create-{n}", {"type": "customer.created", "timestamp": CREATED_AT, "data": data})
            _wait(lambda: _finished(redis, [job_id_for(f"create-{n}") for n in range(CUSTOMERS)]), 120)
            metrics_before = _freshness_count(port)
            count = int(options.rate * options.seconds)
            started = time.monotonic()
            late = 0.0
            for n in range(count):
                due = started + n / options.rate
                late = max(late, time.monotonic() - due)
                time.sleep(max(0.0, due - time.monotonic()))
                stamp = f"2026-11-22T10:{n // 600:02d}:{n // 10 % 60:02d}.{n % 10}00000+00:00"
                deliver(f"update-{n}", {"type": "customer.updated", "timestamp": stamp,
                                        "data": {"external_id": f"fresh-{n % CUSTOMERS}",
                                                 "description": f"update {n}"}})  # fmt: skip
            sent_seconds = time.monotonic() - started
            job_ids = [job_id_for(f"update-{n}") for n in range(count)]
            _wait(lambda: _finished(redis, job_ids), 300)
            jobs = Job.fetch_many(job_ids, connection=redis, serializer=JSONSerializer)
            seconds = sorted(
                (job.ended_at - job.enqueued_at).total_seconds()
                for job in jobs
                if job is not None and job.ended_at and job.enqueued_at
            )
            counted = _freshness_count(port) - metrics_before
        finally:
            stop(dyno)
            stop(web)
            redis.close()
            sandbox.stop()
    p50 = statistics.median(seconds)
    p99 = seconds[int(0.99 * (len(seconds) - 1))]
    rows = [
        ("events", f"{len(seconds)} at {count / sent_seconds:.1f}/s over {sent_seconds:.0f} s"),
        ("p50 freshness", f"{p50 * 1000:.0f} ms"),
        ("p99 freshness", f"{p99 * 1000:.0f} ms"),
        ("max freshness", f"{seconds[-1] * 1000:.0f} ms"),
        ("counted by /metrics (crmsync_event_freshness_seconds_count)", counted),
        ("sender's worst lateness", f"{late * 1000:.0f} ms"),
        ("target p99", "<= 500 ms: " + ("met" if p99 <= 0.5 else "NOT met")),
    ]
    print_table(
        f"Freshness: {options.rate:.0f} events/s, {options.api_latency_ms} ms API, one worker dyno "
        "(default settings)",
        ("figure", "value"),
        rows,
    )


def _finished(redis: Redis, job_ids: list[str]) -> bool:
    jobs = Job.fetch_many(job_ids, connection=redis, serializer=JSONSerializer)
    return all(job is not None and job.get_status(refresh=False) == "finished" for job in jobs)


def _wait(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"not done after {timeout:.0f} s")
        time.sleep(0.2)


def _freshness_count(port: int) -> int:
    """`crmsync_event_freshness_seconds_count` from the web's /metrics."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("crmsync_event_freshness_seconds_count"):
            return int(float(line.split()[-1]))
    return 0


if __name__ == "__main__":
    main()
