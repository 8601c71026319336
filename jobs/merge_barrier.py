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

Two waits go the other way, with the same `MergeWaiting` (no retry spent): from a merge's first
platform step to its commit, its records carry its mark (`CustomerLedgers.mark_merging`), and their
other events wait for the commit (`wait_while_merging`), since a record re-keyed to the survivor has
no alias yet to route them; and an event for a new survivor that finds no customer waits for the
merge into it still to run (`wait_for_merge_into`), however long that merge waits itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from redis import Redis
from rq.job import Job

from crmsync.core.errors import CustomerLocked
from crmsync.core.events import CUSTOMER_MERGED, Event
from crmsync.core.keys import customer_jobs_key, payload_key
from crmsync.core.queue import app_queue
from crmsync.core.redis_conn import LuaScript

from .ordering import LockedCustomer

__all__ = ["MergeWaiting", "MergeBarrier", "wait_while_merging"]

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
    """A merge and its records' other events wait for one another (an older event still to run, or a
    merge under way): retried later, without spending a retry."""

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
        _wait_for(self._still_to_run(job.id, external_ids, lambda other: other.version < merge.version),
                  "older event(s) of the merged records still to run")  # fmt: skip
        job.meta[_BEGUN] = True
        job.save_meta()

    def wait_for_merge_into(self, event: Event, job: Job | None) -> None:
        """Raise MergeWaiting while an older merge into `event`'s customer is still to run: the record
        an event for a new survivor (HubSpot's `newObjectId`) writes to comes with that merge, so the
        event waits for it without spending its retries (it would fail as `customer_not_found`)."""
        if job is None:
            return

        def merge_into(other: Event) -> bool:
            return other.type == CUSTOMER_MERGED and other.external_id == event.external_id \
                and other.version < event.version  # fmt: skip

        _wait_for(
            self._still_to_run(job.id, [event.external_id], merge_into), "merge(s) into this customer to run"
        )

    def _still_to_run(
        self, job_id: str, external_ids: Iterable[str], chosen: Callable[[Event], bool]
    ) -> list[float]:
        """When each `chosen` job of `external_ids` still to run is due (unix seconds; now if queued or
        running), other than `job_id`."""
        found = self._read(keys=[customer_jobs_key(external_id) for external_id in external_ids],
                           args=[job_id, Job.redis_job_namespace_prefix, payload_key(""),
                                 self._scheduled])  # fmt: skip
        return [
            float(due) if due else time.time()
            for payload, due in zip(found[::2], found[1::2], strict=True)
            if chosen(Event.from_payload(json.loads(payload)))
        ]


def _wait_for(dues: list[float], what: str) -> None:
    """Raise MergeWaiting, to be retried a little after the last of `dues`, if there is any."""
    if dues:
        wait = max(dues) - time.time() + AFTER_DUE_SECONDS
        raise MergeWaiting(f"{len(dues)} {what}", retry_after=max(wait, AFTER_DUE_SECONDS))


def wait_while_merging(customers: Iterable[LockedCustomer], job: Job | None = None) -> None:
    """Raise MergeWaiting while a merge other than `job` is under way for one of `customers`: it began
    its platform steps and has not committed, so their records are half-merged (a record re-keyed to
    the survivor, and no alias yet to route its events there)."""
    merging = {customer.merging for customer in customers} - {"", job.id if job else ""}
    if merging:
        raise MergeWaiting("a merge of this customer is under way", retry_after=AFTER_DUE_SECONDS)


# In the merge job's meta once it began its platform steps.
_BEGUN = "merge_begun"
