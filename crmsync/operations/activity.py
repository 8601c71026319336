"""What the service is doing now, read from Redis: the dashboard's overview and `/metrics`'s gauges.

The last hour's webhooks are the per-minute counters (crmsync.core.counters); the queue's figures
come from RQ's own keys in one scripted read (crmsync.core.rq_internals).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from crmsync.core import rq_internals
from crmsync.core.counters import WEBHOOK_OUTCOMES, current_minute
from crmsync.core.keys import job_minute_counter_key, minute_counter_key
from crmsync.core.queue import app_queue

__all__ = ["QueueSnapshot", "read_snapshot", "Activity", "ACTIVITY_SERIES", "read_activity"]


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue and the last hour's webhooks, as one consistent read."""

    queued: int
    scheduled: int
    failed: int
    workers_alive: int
    oldest_queued_age_seconds: float
    webhooks_last_hour: dict[str, int]


def read_snapshot(redis: Redis, queue_name: str) -> QueueSnapshot:
    """Read the queue's figures and the last hour's webhook counts in one pipelined round trip."""
    queue = app_queue(redis, queue_name)
    now = time.time()
    minute = current_minute(now)
    minutes = range(minute - 59, minute + 1)
    counter_keys = [minute_counter_key(outcome, m) for outcome in WEBHOOK_OUTCOMES for m in minutes]
    script = redis.register_script(rq_internals.QUEUE_FIGURES_SCRIPT)
    keys, job_key_prefix = rq_internals.queue_figures_keys(queue)
    with redis.pipeline(transaction=False) as pipe:
        script(keys=keys, args=[now, job_key_prefix], client=pipe)
        pipe.mget(counter_keys)
        (depth, scheduled, failed, alive, oldest), counts = pipe.execute()
    per_outcome = {
        outcome: sum(int(value or 0) for value in counts[index * 60 : (index + 1) * 60])
        for index, outcome in enumerate(WEBHOOK_OUTCOMES)
    }
    age = 0.0
    if oldest:
        age = max(0.0, now - rq_internals.enqueued_at(oldest).timestamp())
    return QueueSnapshot(
        queued=int(depth),
        scheduled=int(scheduled),
        failed=int(failed),
        workers_alive=int(alive),
        oldest_queued_age_seconds=age,
        webhooks_last_hour=per_outcome,
    )


# The overview's chart: (name, label, counter key of one minute) per series, in drawing order.
# "applied" is the jobs' `succeeded` outcome: applied, or nothing left to change (no-op).
ACTIVITY_SERIES = (
    ("accepted", "accepted", lambda minute: minute_counter_key("accepted", minute)),
    ("applied", "applied", lambda minute: job_minute_counter_key("succeeded", minute)),
    ("stale", "stale", lambda minute: job_minute_counter_key("stale", minute)),
    ("retried", "retried", lambda minute: job_minute_counter_key("retried", minute)),
    ("failed", "failed", lambda minute: job_minute_counter_key("failed", minute)),
)
ACTIVITY_MINUTES = 120


@dataclass(frozen=True)
class Activity:
    """Events per minute over a window: accepted webhooks, and job attempts by outcome."""

    first_minute: int  # unix time // 60 of the first count
    series: dict[str, list[int]]
    labels: dict[str, str]


def read_activity(redis: Redis, minutes: int = ACTIVITY_MINUTES, now: float | None = None) -> Activity:
    """The last `minutes` minutes (the current one last) of every series, in one MGET."""
    last = current_minute(now)
    window = range(last - minutes + 1, last + 1)
    keys = [key_of(minute) for _, _, key_of in ACTIVITY_SERIES for minute in window]
    counts = [int(value or 0) for value in redis.mget(keys)]
    series = {
        name: counts[index * minutes : (index + 1) * minutes]
        for index, (name, _, _) in enumerate(ACTIVITY_SERIES)
    }
    return Activity(window.start, series, {name: label for name, label, _ in ACTIVITY_SERIES})
