"""Counters kept in Redis so the web process can export them: job outcomes and durations, recorded
by workers and operators, and the webhooks accepted, duplicate or rejected per minute.

Workers run in their own processes (on Heroku, their own dynos), which Prometheus cannot scrape.
So each job adds to two Redis hashes in one pipelined call, and the web's collector reads them:
counts per `type|outcome`, and a duration histogram per type (a count per bucket, plus sum and count);
the same call counts the outcome in the current minute, for the dashboard's chart.
Labels are event types and fixed outcome names only: never customer data.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError

from crmsync.core.keys import (
    FRESHNESS_KEY,
    JOB_DURATIONS_KEY,
    JOB_OUTCOMES_KEY,
    MINUTE_COUNTER_TTL,
    OPERATOR_ACTIONS_KEY,
    SOURCE_ITEMS_KEY,
    job_minute_counter_key,
    minute_counter_key,
)
from crmsync.core.redis_conn import as_text

__all__ = [
    "JOB_OUTCOMES",
    "DURATION_BUCKETS",
    "record_job",
    "record_operator_action",
    "FRESHNESS_BUCKETS",
    "record_freshness",
    "outcome_of",
    "JobFigures",
    "read_job_figures",
    "WEBHOOK_OUTCOMES",
    "current_minute",
    "count_rejection",
    "source_item_field",
    "read_source_items",
    "VERSION_FALLBACK",
]

log = logging.getLogger("crmsync.jobs")

# "succeeded" covers applied and no-op events; "stale" ones were superseded by a newer event.
JOB_OUTCOMES = ("succeeded", "stale", "retried", "failed")
# Seconds: most jobs are one or two GraphQL calls; the top buckets catch timeouts and backoff.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def outcome_of(result: str) -> str:
    """The metric outcome for an applier's result (applied, noop, stale)."""
    return "stale" if result == "stale" else "succeeded"


def record_job(redis: Redis, event_type: str, outcome: str, seconds: float) -> None:
    """Count one finished attempt, its duration, and its outcome in this minute (for the overview's
    chart). A metrics write never fails the job itself."""
    bucket = _bucket(DURATION_BUCKETS, seconds)
    this_minute = job_minute_counter_key(outcome, current_minute())
    try:
        with redis.pipeline(transaction=False) as pipe:
            pipe.incr(this_minute)
            pipe.expire(this_minute, MINUTE_COUNTER_TTL)
            pipe.hincrby(JOB_OUTCOMES_KEY, f"{event_type}|{outcome}", 1)
            pipe.hincrby(JOB_DURATIONS_KEY, f"{event_type}|{bucket}", 1)
            pipe.hincrby(JOB_DURATIONS_KEY, f"{event_type}|count", 1)
            pipe.hincrbyfloat(JOB_DURATIONS_KEY, f"{event_type}|sum", seconds)
            pipe.execute()
    except RedisError:
        log.warning("job metrics not recorded", extra={"event": "metrics_unavailable", "type": event_type})


# Seconds from an event's enqueue to its write's answer: a backlog or a retry is what moves it up.
FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def record_freshness(redis: Redis, seconds: list[float]) -> None:
    """Count the freshness of the events one write applied (one pipelined call; never fails the job)."""
    try:
        with redis.pipeline(transaction=False) as pipe:
            for value in seconds:
                pipe.hincrby(FRESHNESS_KEY, _bucket(FRESHNESS_BUCKETS, value), 1)
            pipe.hincrby(FRESHNESS_KEY, "count", len(seconds))
            pipe.hincrbyfloat(FRESHNESS_KEY, "sum", sum(seconds))
            pipe.execute()
    except RedisError:
        log.warning("freshness not recorded", extra={"event": "metrics_unavailable"})


def _bucket(bounds: tuple[float, ...], value: float) -> str:
    index = bisect.bisect_left(bounds, value)
    return str(bounds[index]) if index < len(bounds) else "+Inf"


def _cumulative(bounds: tuple[float, ...], parts: dict[str, str]) -> tuple[list[tuple[str, int]], float]:
    """Prometheus's cumulative (upper bound, count) pairs ending with +Inf, and the sum."""
    running, buckets = 0, []
    for bound in [*map(str, bounds), "+Inf"]:
        running += int(parts.get(bound, 0))
        buckets.append((bound, running))
    return buckets, float(parts.get("sum", 0))


def record_operator_action(redis: Redis, action: str, event_type: str) -> None:
    """Count an operator's replay or discard of a failed job."""
    redis.hincrby(OPERATOR_ACTIONS_KEY, f"{event_type}|{action}", 1)


@dataclass
class JobFigures:
    """Everything the workers and operators recorded, as read back for export."""

    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    operator_actions: dict[tuple[str, str], int] = field(default_factory=dict)
    # Per type: cumulative (upper bound, count) pairs ending with +Inf, then the sum of seconds.
    durations: dict[str, tuple[list[tuple[str, int]], float]] = field(default_factory=dict)
    # The same for the freshness of applied events.
    freshness: tuple[list[tuple[str, int]], float] = ([], 0.0)


def read_job_figures(redis: Redis) -> JobFigures:
    """Read the recorded figures in one pipelined round trip."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(JOB_OUTCOMES_KEY)
        pipe.hgetall(OPERATOR_ACTIONS_KEY)
        pipe.hgetall(JOB_DURATIONS_KEY)
        pipe.hgetall(FRESHNESS_KEY)
        outcomes, actions, durations, freshness = pipe.execute()
    figures = JobFigures(outcomes=_pairs(outcomes), operator_actions=_pairs(actions))
    figures.freshness = _cumulative(
        FRESHNESS_BUCKETS, {as_text(name): as_text(value) for name, value in freshness.items()}
    )
    by_type: dict[str, dict[str, str]] = {}
    for name, value in durations.items():
        event_type, _, part = name.decode().rpartition("|")
        by_type.setdefault(event_type, {})[part] = value.decode()
    for event_type, parts in by_type.items():
        figures.durations[event_type] = _cumulative(DURATION_BUCKETS, parts)
    return figures


def _pairs(raw: dict[bytes, bytes]) -> dict[tuple[str, str], int]:
    pairs = {}
    for name, value in raw.items():
        event_type, _, label = name.decode().rpartition("|")
        pairs[(event_type, label)] = int(value)
    return pairs


# Webhook outcomes are counted per minute (`INCR` + `EXPIRE`), so "in the last hour" is a sum of 60
# keys and old minutes disappear on their own. Accepted and duplicate deliveries are counted inside
# the intake's Lua script (crmsync.core.queue, one round trip per webhook); rejections, which are
# rare, by `count_rejection`.
WEBHOOK_OUTCOMES = ("accepted", "duplicate", "rejected")


def current_minute(at: float | None = None) -> int:
    return int((time.time() if at is None else at) // 60)


def count_rejection(redis: Redis) -> None:
    """Count one rejected delivery in the current minute (one pipelined round trip)."""
    key = minute_counter_key("rejected", current_minute())
    with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, MINUTE_COUNTER_TTL)
        pipe.execute()


# Native CRM sources count the items of a batch they ignore (by type) and reject, in the same round
# trip that accepts its events (crmsync.core.queue); /metrics and the dashboard read the totals.


# An item mapped without its version field: its type names what stood in (SOURCE_ITEMS_KEY's outcome).
VERSION_FALLBACK = "version_fallback"


def source_item_field(source: str, outcome: str, item_type: str = "") -> str:
    """The SOURCE_ITEMS_KEY hash field counting `outcome` ("ignored", "rejected", VERSION_FALLBACK)
    items of `source`, by type."""
    return f"{source}|{outcome}|{item_type}"


def read_source_items(redis: Redis) -> dict[tuple[str, str, str], int]:
    """(source, outcome, type) → count, for every item a source ignored or rejected, and every version
    fallback. Rejected items counted before they had a type (an empty one) count as `unknown`."""
    counts: dict[tuple[str, str, str], int] = {}
    for field_name, count in redis.hgetall(SOURCE_ITEMS_KEY).items():
        source, outcome, item_type = as_text(field_name).split("|", 2)
        key = (source, outcome, item_type or "unknown")
        counts[key] = counts.get(key, 0) + int(count)
    return counts
