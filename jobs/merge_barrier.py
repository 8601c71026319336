"""A merge waits for its records' older events: it is applied only once they all were.

A merge decides from its records as they stand: which one has a platform customer (kept, re-keyed),
what each ledger holds. An event older than the merge that is still to run (queued, scheduled for a
retry, or running) would change that after the decision: a kept record's create retried after the
merge was not found, or found its name taken by the survivor it was re-keyed to (`name_conflict`);
an older update of the kept record missed what a new survivor took from it.

So before its first platform step a merge reads its records' job indexes (`customer_jobs_key`, a set
the intake writes) in one round trip, and compares the versions of the jobs still to run with its
own. While one is older, the merge raises `MergeWaiting`: it is retried a little after that job is
due, and the wait does not spend its retry budget (jobs/tasks.py gives the retry back). Waits never
form a circle: each one is for a strictly older event. Once a merge began its platform steps it
never waits again: its records may be half-merged, and only finishing the merge repairs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from redis import Redis
from rq.job import Job

from crmsync.core.errors import CustomerLocked
from crmsync.core.events import Event
from crmsync.core.keys import customer_jobs_key, payload_key
from crmsync.core.queue import app_queue
from crmsync.core.redis_conn import LuaScript

__all__ = ["MergeWaiting", "MergeBarrier"]

# After the blocking job is due, it needs a moment to run before the merge is tried again.
AFTER_DUE_SECONDS = 2.0

# KEYS: the records' job indexes. ARGV: the merge's job id, RQ's job key prefix, the payload key
# prefix, the scheduled registry. Returns (payload, due) of each other job of these records that is
# still to run: queued, scheduled for a retry (due: its time, unix seconds) or started (due: '').
_STILL_TO_RUN = """
local found = {}
for _, index in ipairs(KEYS) do
  for _, id in ipairs(redis.call('SMEMBERS', index)) do
    if id ~= ARGV[1] then
      local status = redis.call('HGET', ARGV[2] .. id, 'status')
      if status == 'queued' or status == 'scheduled' or status == 'started' then
        local payload = redis.call('GET', ARGV[3] .. id)
        if payload then
          found[#found + 1] = payload
          found[#found + 1] = redis.call('ZSCORE', ARGV[4], id) or ''
        end
      end
    end
  end
end
return found
"""


class MergeWaiting(CustomerLocked):
    """An event older than the merge, for one of its records, is still to run: retry after it."""

    failure_class = "merge_waiting"


class MergeBarrier:
    """Holds a merge back while older events of its records are still to run."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self._read = LuaScript(redis, _STILL_TO_RUN)
        self._scheduled = app_queue(redis, queue_name).scheduled_job_registry.key

    def wait_for_older_events(self, merge: Event, job: Job | None, external_ids: Iterable[str]) -> None:
        """Raise MergeWaiting while an event older than `merge` for one of `external_ids` is still to
        run; else mark the merge's `job` as begun (saved at once: the retry of a worker killed
        mid-merge must not wait either). Call it right before the merge's first platform step."""
        if job is None or job.meta.get(_BEGUN):
            return
        dues = self._older_still_to_run(merge, job.id, external_ids)
        if dues:
            wait = max(dues) - time.time() + AFTER_DUE_SECONDS
            raise MergeWaiting(f"{len(dues)} older event(s) of the merged records still to run",
                               retry_after=max(wait, AFTER_DUE_SECONDS))  # fmt: skip
        job.meta[_BEGUN] = True
        job.save_meta()

    def _older_still_to_run(self, merge: Event, job_id: str, external_ids: Iterable[str]) -> list[float]:
        """When each job older than `merge` still to run is due (unix seconds; now if queued or running)."""
        found = self._read(keys=[customer_jobs_key(external_id) for external_id in external_ids],
                           args=[job_id, Job.redis_job_namespace_prefix, payload_key(""),
                                 self._scheduled])  # fmt: skip
        return [
            float(due) if due else time.time()
            for payload, due in zip(found[::2], found[1::2], strict=True)
            if Event.from_payload(json.loads(payload)).version < merge.version
        ]


# In the merge job's meta once it began its platform steps.
_BEGUN = "merge_begun"
