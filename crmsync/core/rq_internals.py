"""Everything that relies on RQ's private storage format, in one module (rq is pinned to the tested range).

RQ's public API is enough to run jobs, but three things crmsync does for speed or for GDPR need to
read or write RQ's Redis structures directly:

- the intake enqueues in one Lua script, writing the job hash as `Job.to_dict()` lays it out (built
  without `Job.create`, `QueuedJobFields`), the queue list and RQ's set of queues;
- the overview reads the queue's figures (RQ's registries, worker keys and a job's `enqueued_at`)
  in one scripted read;
- an erasure scrubs stored jobs: it writes the scrubbed payload into their zlib-compressed `data`
  (and deletes their payload key), redacts their JSON `meta`, zlib-compressed `exc_info`, and the
  results stream whose `exc_string` is base64 of zlib;
- operators' views read a job's `meta` and `ended_at` without loading its arguments;
- a job cut off by a Redis outage leaves its `<job id>:<execution id>` entry in the started
  registry, whose execution hash may have expired meanwhile (RQ's own lookup then fails);
- RQ's `Job.retry` writes the SCHEDULED status outside the transaction that schedules the job
  (`RetryInOneTransaction`);
- an event job's argument (the event's payload) is kept in a key of its own, not in the job hash
  (`EventJob`), so that the hash stays small enough for Redis's compact encoding.

When upgrading rq, this module (and its tests) is what to check.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus, Retry
from rq.queue import Queue
from rq.results import Result
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat, utcparse
from rq.worker import SimpleWorker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from .keys import CUSTOMER_JOBS_TTL_SECONDS, customer_jobs_key, payload_key
from .redis_conn import as_text

__all__ = [
    "RetryInOneTransaction",
    "EventJob",
    "MissingPayload",
    "ACCEPT_SCRIPT",
    "QueuedJobFields",
    "enqueue_time",
    "wait_as_new",
    "mark_queued",
    "QUEUE_FIGURES_SCRIPT",
    "queue_figures_keys",
    "enqueued_at",
    "save_job_data",
    "stored_exc_info",
    "save_exc_info",
    "job_keys",
    "stored_results",
    "rewrite_results",
    "inflate",
    "read_meta",
    "read_meta_and_end",
    "drop_started_entries",
]


class RetryInOneTransaction(Job):
    """RQ's job, except that a retry writes its SCHEDULED status in the caller's transaction.

    RQ 3.0's `Job.retry` sets the status at once and leaves the rest (the scheduled registry, the
    removal from the started registry) to the caller's pipeline. A worker killed or cut from Redis
    between the two leaves a job that no registry holds and nothing ever runs: the started
    registry's cleanup takes only jobs still STARTED, and so does the settling after an outage
    (jobs/redis_outage.py). The soak met it once in ten runs with a dyno SIGKILLed mid-run. Written
    in the transaction, the status changes together with the registries, or not at all.
    """

    _retry_pipeline: Pipeline | None = None

    def retry(self, queue: Queue, pipeline: Pipeline) -> None:
        self._retry_pipeline = pipeline
        try:
            super().retry(queue, pipeline)
        finally:
            self._retry_pipeline = None

    def set_status(self, status: JobStatus, pipeline: Pipeline | None = None) -> None:
        super().set_status(status, pipeline if pipeline is not None else self._retry_pipeline)


class MissingPayload(DeserializationError):
    """The job's payload key is gone (deleted outside crmsync, e.g. by `rq empty`): nothing to apply."""


class EventJob(RetryInOneTransaction):
    """An event's job: its call is stored without its argument, which is in `payload_key(job id)`.

    Redis keeps a hash compact (a listpack, ~3 × smaller) only while each value is ≤ 64 bytes
    (`hash-max-listpack-value`, which Heroku Redis does not let one change); the event's payload
    (~170 bytes) would make every queued job a hashtable. The payload key lives as long as the
    hash: it is written with it (the accept script), given the hash's TTL whenever RQ sets one
    (`cleanup`: a finished or failed job) and deleted with it (`delete`: a discard). Until the job
    ends it expires after CUSTOMER_JOBS_TTL_SECONDS (62 days), as the customer's job index through
    which an erasure finds it does, so a job deleted by a tool that does not know this class (`rq
    empty`) cannot leave personal data behind for good; a job still waiting after that fails as
    `payload_missing`. A job whose stored call carries its arguments (a scrubbed job, or a job
    enqueued through RQ's own API) uses those and ignores the key.
    """

    def _deserialize_data(self) -> None:
        super()._deserialize_data()
        if self._args or self._kwargs:
            return
        raw = self.connection.get(payload_key(self.id))
        if raw is None:
            raise MissingPayload(f"job {self.id}: its payload key is gone")
        self._args = (json.loads(raw),)

    def cleanup(self, ttl: int | None = None, pipeline: Pipeline | None = None,
                remove_from_queue: bool = True) -> None:  # fmt: skip
        super().cleanup(ttl, pipeline, remove_from_queue)
        if ttl is not None and ttl > 0:
            (pipeline if pipeline is not None else self.connection).expire(payload_key(self.id), ttl)

    def delete(self, pipeline: Pipeline | None = None, remove_from_queue: bool = True,
               delete_dependents: bool = False) -> None:  # fmt: skip
        super().delete(pipeline, remove_from_queue, delete_dependents)
        (pipeline if pipeline is not None else self.connection).delete(payload_key(self.id))


# Accepts the events of one request (one or many) in one round trip, all or nothing: for each event,
# a delivery id seen before is a duplicate; a new one is remembered and its job written and queued.
# The request's ignored and rejected items are counted (and the rejected ones kept) in the same call.
# KEYS: queue key, set of queues, this minute's accepted, duplicate and rejected counters, the source
#       items counters (hash), the rejected items (stream); then for each event: its delivery key,
#       job key, the customer's job index and the job's payload key (EventJob).
# ARGV: delivery ttl, minute counter ttl, customer job index ttl, rejected items ttl, rejected items
#       kept, source items ttl, number of events, of counter increments, of rejected items; then for
#       each event: job id, its job hash's field/value pairs as one MessagePack array of strings
#       (QueuedJobFields.packed: one argument, not ~24, per event), its payload (JSON, kept for the
#       customer job index's ttl until the job ends: EventJob); then (hash field, increment) pairs;
#       then for each rejected item: number of field/value args, those args.
ACCEPT_SCRIPT = """
local events, increments, rejected = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local at = 10
local results, queued, duplicates = {}, {}, 0
-- This minute's counter of an outcome (accepted, duplicate, rejected), raised once per request and
-- given its TTL by the request that creates it.
local function count(key, n)
  if n > 0 and redis.call('INCRBY', key, n) == n then
    redis.call('EXPIRE', key, ARGV[2])
  end
end
for i = 0, events - 1 do
  local delivery, job, index, payload = KEYS[8 + 4 * i], KEYS[9 + 4 * i], KEYS[10 + 4 * i], KEYS[11 + 4 * i]
  local job_id = ARGV[at]
  -- A delivery id maps to one job id (crmsync.core.keys.job_id_for): the key only marks it as seen.
  if redis.call('SET', delivery, 1, 'NX', 'EX', ARGV[1]) then
    redis.call('HSET', job, unpack(cmsgpack.unpack(ARGV[at + 1])))
    -- Personal data is kept no longer than the index that lets an erasure find it (EventJob).
    redis.call('SET', payload, ARGV[at + 2], 'EX', ARGV[3])
    -- The customer's job index, so an erasure finds their jobs without a scan.
    redis.call('SADD', index, job_id)
    redis.call('EXPIRE', index, ARGV[3])
    queued[#queued + 1] = job_id
    results[#results + 1] = 1
  else
    duplicates = duplicates + 1
    results[#results + 1] = 0
  end
  results[#results + 1] = job_id
  at = at + 3
end
if #queued > 0 then
  redis.call('SADD', KEYS[2], KEYS[1])
  -- In the request's order; in slices, as Lua's unpack has a limit (~8,000 values).
  for first = 1, #queued, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(queued, first, math.min(first + 999, #queued)))
  end
end
count(KEYS[3], #queued)
count(KEYS[4], duplicates)
count(KEYS[5], rejected)
for _ = 1, increments do
  redis.call('HINCRBY', KEYS[6], ARGV[at], ARGV[at + 1])
  at = at + 2
end
if increments > 0 then
  redis.call('EXPIRE', KEYS[6], ARGV[6])
end
for _ = 1, rejected do
  local fields = tonumber(ARGV[at])
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, at + 1, at + fields))
  at = at + 1 + fields
end
if rejected > 0 then
  redis.call('EXPIRE', KEYS[7], ARGV[4])
end
return results
"""


class QueuedJobFields:
    """The hash RQ stores for a queued `EventJob` of `func_name` with fixed options, as field/value
    pairs for ACCEPT_SCRIPT: what `Job.create(...)` + `Job.to_dict()` give for a call without
    arguments (the payload has its own key) and without meta, minus the empty fields, built ~10 ×
    faster (the options and the call are serialised once, not for every request;
    tests/test_rq_internals.py checks the two agree). Every value is ≤ 64 bytes, so Redis keeps the
    hash as a listpack."""

    def __init__(self, func_name: str, origin: str, timeout: int, result_ttl: int, failure_ttl: int,
                 retry: Retry | None) -> None:  # fmt: skip
        call = zlib.compress(JSONSerializer.dumps([func_name, None, [], {}]))
        fixed: dict[str, Any] = {"origin": origin, "timeout": timeout, "result_ttl": result_ttl,
                                 "failure_ttl": failure_ttl, "status": JobStatus.QUEUED.value,
                                 "data": call}  # fmt: skip
        if retry is not None:
            fixed |= {"retries_left": retry.max, "retry_intervals": json.dumps(retry.intervals)}
        self._fixed = [item for pair in fixed.items() for item in pair]
        self._packed_fixed = b"".join(map(_msgpack_string, self._fixed))
        self._length = _MSGPACK_ARRAY16 + (len(self._fixed) + 2 * len(_OWN_FIELDS)).to_bytes(2, "big")
        self._names = [_msgpack_string(name) for name in _OWN_FIELDS]
        self._descriptions: dict[str, bytes] = {}  # packed once each: they are the few event types

    def packed(self, description: str, enqueued_at: str) -> bytes:
        """The job's field/value pairs as one MessagePack array of strings, which ACCEPT_SCRIPT
        unpacks (Redis's Lua has cmsgpack): one script argument per job. redis-py handles each
        argument in Python, so a batch of 100 events as ~2,400 arguments cost ~1 ms of CPU to pack
        (docs/benchmarks.md). `enqueued_at` (`enqueue_time()`) is also its creation time."""
        packed_description = self._descriptions.get(description)
        if packed_description is None:
            packed_description = self._descriptions.setdefault(description, _msgpack_string(description))
        stamp = _msgpack_string(enqueued_at)
        created, enqueued, described = self._names
        return b"".join((self._length, self._packed_fixed, created, stamp, enqueued, stamp, described,
                         packed_description))  # fmt: skip


def wait_as_new(pipe: Pipeline, job_id: str, external_id: str | None) -> None:
    """A job put back on the queue by hand (a replay) waits like a newly accepted one. RQ's requeue
    leaves the hash the failure TTL it had, so a replay of a job that failed weeks ago, waiting
    behind a backlog, could expire in the queue and be skipped without a trace: the hash loses its
    TTL, the payload (EventJob) gets the waiting one the accept script gives it, and the customer's
    job index, through which an erasure finds the job, lives at least as long."""
    pipe.persist(Job.key_for(job_id))
    pipe.expire(payload_key(job_id), CUSTOMER_JOBS_TTL_SECONDS)
    if external_id:
        pipe.expire(customer_jobs_key(external_id), CUSTOMER_JOBS_TTL_SECONDS)


def enqueue_time() -> str:
    """Now, as RQ writes a job's `enqueued_at` (`utcformat`; one per request: its jobs are enqueued
    together). RQ's strftime costs ~25 K instructions a call; the seconds are formatted once a second."""
    global _second_stamp
    second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    stamp = _second_stamp  # one read: another thread may replace it meanwhile
    if stamp[0] != second:
        stamp = _second_stamp = (second, utcformat(datetime.fromtimestamp(second, UTC))[:19])
    return f"{stamp[1]}.{nanoseconds // 1000:06d}Z"


_second_stamp: tuple[int, str] = (-1, "")


# The fields of a queued job that vary, in the order QueuedJobFields packs them (after the fixed ones).
_OWN_FIELDS = ("created_at", "enqueued_at", "description")


_MSGPACK_ARRAY16 = b"\xdc"


def _msgpack_string(value: Any) -> bytes:
    """One MessagePack str (bytes as they are; other values as Redis would store them)."""
    data = value if type(value) is bytes else str(value).encode()
    size = len(data)
    return (b"\xda" + size.to_bytes(2, "big") if size < 0x10000 else b"\xdb" + size.to_bytes(4, "big")) + data


def mark_queued(job: Job) -> None:
    """What `Queue.enqueue_job` would set on the job, for a job the accept script enqueues."""
    job.enqueued_at = now()
    job._status = JobStatus.QUEUED


# KEYS: queue list, scheduled registry, failed registry, the queue's set of worker keys.
# ARGV: now (unix seconds), the RQ job key prefix.
# The worker and oldest-job keys are derived inside the script (as RQ's own scripts do), which keeps
# the read at one round trip whatever the number of workers.
QUEUE_FIGURES_SCRIPT = """
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


def queue_figures_keys(queue: Queue) -> tuple[list[str], str]:
    """QUEUE_FIGURES_SCRIPT's keys for `queue`, and the job key prefix it takes as ARGV[2]."""
    keys = [
        queue.key,
        queue.scheduled_job_registry.key,
        queue.failed_job_registry.key,
        WORKERS_BY_QUEUE_KEY % queue.name,
    ]
    return keys, queue.job_class.redis_job_namespace_prefix


def enqueued_at(raw: bytes | str) -> datetime:
    """A job hash's `enqueued_at` field as a datetime."""
    return utcparse(as_text(raw))


def save_job_data(pipe: Pipeline, job: Job, meta: dict[str, Any]) -> None:
    """Overwrite the stored call (`job.data`, zlib-compressed, its arguments now in it) and meta of
    `job`, and delete its payload key, which the stored call now stands for."""
    pipe.hset(job.key, mapping={"data": zlib.compress(job.data), "meta": JSONSerializer.dumps(meta)})
    pipe.delete(payload_key(job.id))


def stored_exc_info(redis: Redis, job: Job) -> str | None:
    """The job's stored traceback (`exc_info`, zlib-compressed), or None."""
    raw = cast(bytes | None, redis.hget(job.key, "exc_info"))
    return inflate(raw) if raw else None


def save_exc_info(pipe: Pipeline, job: Job, text: str) -> None:
    """Overwrite the job's stored traceback with `text`."""
    pipe.hset(job.key, "exc_info", zlib.compress(text.encode()))


def job_keys(job_id: str) -> tuple[str, str, str]:
    """The keys holding a job's stored state: its hash, payload and results stream (to WATCH them)."""
    return Job.key_for(job_id), payload_key(job_id), Result.get_key(job_id)


def stored_results(redis: Redis, job_id: str) -> tuple[list[Any], int]:
    """The job's results stream entries and their remaining TTL in ms (for `rewrite_results`)."""
    key = Result.get_key(job_id)
    return list(redis.xrange(key) or []), int(redis.pttl(key))


def rewrite_results(
    pipe: Pipeline, job_id: str, entries: list[Any], ttl_ms: int, redact: Callable[[str], str]
) -> None:
    """Stream entries cannot be edited: re-add each one, same id, its exception text passed through
    `redact` (its `exc_string` is base64 of zlib)."""
    key = Result.get_key(job_id)
    pipe.delete(key)
    for entry_id, fields in entries:
        fields = dict(fields)
        if fields.get(b"exc_string"):
            text = redact(inflate(base64.b64decode(fields[b"exc_string"])))
            fields[b"exc_string"] = base64.b64encode(zlib.compress(text.encode()))
        pipe.xadd(key, fields, id=entry_id)
    if ttl_ms > 0:
        pipe.pexpire(key, ttl_ms)


def inflate(raw: bytes) -> str:
    """Text RQ stored zlib-compressed (or, for foreign jobs, not)."""
    try:
        return zlib.decompress(raw).decode()
    except zlib.error:
        return raw.decode(errors="replace")


def read_meta(redis: Redis, job_id: str) -> dict[str, Any]:
    """A job's `meta`, without loading its arguments; {} for an unknown job."""
    raw = redis.hget(Job.key_for(job_id), "meta")
    return dict(JSONSerializer.loads(raw)) if raw else {}


def read_meta_and_end(
    redis: Redis, job_ids: list[str]
) -> list[tuple[dict[str, Any] | None, datetime | None]]:
    """Each job's `meta` (None when the hash expired) and `ended_at`, in one pipelined read that
    leaves the jobs' arguments alone."""
    with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(Job.key_for(job_id), "meta", "ended_at")
        rows = pipe.execute()
    return [
        (
            JSONSerializer.loads(meta) if meta is not None else None,
            utcparse(ended.decode()) if ended else None,
        )
        for meta, ended in rows
    ]


def drop_started_entries(pipe: Pipeline, redis: Redis, queue: Queue, job_id: str) -> None:
    """Remove every entry of `job_id` from the queue's started registry (members are
    `<job id>:<execution id>`), also those whose execution hash has expired."""
    registry = queue.started_job_registry
    members = [as_text(member) for member in cast(list[bytes], redis.zrange(registry.key, 0, -1))]
    stale = [member for member in members if registry.parse_job_id(member) == job_id]
    if stale:
        pipe.zrem(registry.key, *stale)


class WorkerHooks(SimpleWorker):
    """RQ 3.0's private worker hooks under names crmsync owns: jobs/ overrides and reads these, so
    no module but this one names RQ's private attributes (rq is pinned to the range tested)."""

    job_class = EventJob

    @property
    def stop_requested(self) -> bool:
        return bool(self._stop_requested)

    def ask_to_stop(self) -> None:
        """Stop once the running job (if any) ends, as RQ's warm shutdown does."""
        self._stop_requested = True

    def _install_signal_handlers(self) -> None:
        self.install_signal_handlers()

    def install_signal_handlers(self) -> None:
        """RQ's SIGINT/SIGTERM handlers; a worker that is not a process's main thread replaces them."""
        super()._install_signal_handlers()

    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        self.start_scheduler(*args, **kwargs)

    def start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        """RQ's: take the scheduler lock and run the scheduler (arguments as RQ passes them)."""
        super()._start_scheduler(*args, **kwargs)


class SchedulerHooks(RQScheduler):
    """RQ 3.0's private scheduler attributes under names crmsync owns (see WorkerHooks)."""

    @property
    def stop_requested(self) -> bool:
        return bool(self._stop_requested)

    def ask_to_stop(self) -> None:
        self._stop_requested = True

    @property
    def scheduled_queue_names(self) -> set[str]:
        return set(self._queue_names)

    def _install_signal_handlers(self) -> None:
        self.install_signal_handlers()

    def install_signal_handlers(self) -> None:
        """RQ's SIGINT/SIGTERM handlers; a scheduler running as a thread replaces them."""
        super()._install_signal_handlers()
