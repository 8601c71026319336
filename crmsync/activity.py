"""What the service is doing now, read from Redis: the dashboard's overview and `/metrics`'s gauges.

Webhook outcomes are counted per minute (`INCR` + `EXPIRE`), so "in the last hour" is a sum of 60
keys and old minutes disappear on their own. Accepted and duplicate deliveries are counted inside
the intake's Lua script (still one round trip per webhook); rejections, which are rare, by
`count_rejection`. The queue's figures come from RQ's own keys in one scripted read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import utcparse
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from crmsync.keys import PREFIX

__all__ = [
    "WEBHOOK_OUTCOMES",
    "MINUTE_COUNTER_TTL",
    "minute_counter_key",
    "current_minute",
    "count_rejection",
    "QueueSnapshot",
    "read_snapshot",
]

WEBHOOK_OUTCOMES = ("accepted", "duplicate", "rejected")
# Two hours: the last full hour is always there, whatever the clock skew between web processes.
# (The intake's Lua script sets the same expiry on the counters it increments.)
MINUTE_COUNTER_TTL = 7200

# KEYS: queue list, scheduled registry, failed registry, the queue's set of worker keys.
# ARGV: now (unix seconds), the RQ job key prefix.
# The worker and oldest-job keys are derived inside the script (as RQ's own scripts do), which keeps
# the read at one round trip whatever the number of workers.
_SNAPSHOT_SCRIPT = """
local depth = redis.call('LLEN', KEYS[1])
local scheduled = redis.call('ZCARD', KEYS[2])
local failed = redis.call('ZCOUNT', KEYS[3], ARGV[1], '+inf')
local alive = 0
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  alive = alive + redis.call('EXISTS', worker)
end
local oldest = false
local head = redis.call('LINDEX', KEYS[1], 0)
if head then
  oldest = redis.call('HGET', ARGV[2] .. head, 'enqueued_at')
end
return {depth, scheduled, failed, alive, oldest}
"""


def minute_counter_key(outcome: str, minute: int) -> str:
    """Deliveries with `outcome` in one minute (unix time // 60)."""
    return f"{PREFIX}:webhooks:{outcome}:{minute}"


def current_minute(at: float | None = None) -> int:
    return int((time.time() if at is None else at) // 60)


def count_rejection(redis: Redis) -> None:
    """Count one rejected delivery in the current minute (one pipelined round trip)."""
    key = minute_counter_key("rejected", current_minute())
    with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, MINUTE_COUNTER_TTL)
        pipe.execute()


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
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    now = time.time()
    minute = current_minute(now)
    minutes = range(minute - 59, minute + 1)
    counter_keys = [minute_counter_key(outcome, m) for outcome in WEBHOOK_OUTCOMES for m in minutes]
    script = redis.register_script(_SNAPSHOT_SCRIPT)
    keys = [
        queue.key,
        queue.scheduled_job_registry.key,
        queue.failed_job_registry.key,
        WORKERS_BY_QUEUE_KEY % queue_name,
    ]
    with redis.pipeline(transaction=False) as pipe:
        script(keys=keys, args=[now, queue.job_class.redis_job_namespace_prefix], client=pipe)
        pipe.mget(counter_keys)
        (depth, scheduled, failed, alive, oldest), counts = pipe.execute()
    per_outcome = {
        outcome: sum(int(value or 0) for value in counts[index * 60 : (index + 1) * 60])
        for index, outcome in enumerate(WEBHOOK_OUTCOMES)
    }
    age = 0.0
    if oldest:
        enqueued = utcparse(oldest.decode() if isinstance(oldest, bytes) else oldest)
        age = max(0.0, now - enqueued.timestamp())
    return QueueSnapshot(
        queued=int(depth),
        scheduled=int(scheduled),
        failed=int(failed),
        workers_alive=int(alive),
        oldest_queued_age_seconds=age,
        webhooks_last_hour=per_outcome,
    )
