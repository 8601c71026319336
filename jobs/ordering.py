"""Per-customer ordering: a lock, and a ledger of the newest version applied to each field.

CRMs deliver out of order and more than once. For each external id the ledger keeps the version
(CRM timestamp + webhook id) of the last applied value of every field, the last delete (a tombstone)
and the last erasure. An event only writes the fields no newer event has written; an event with
nothing left to write is stale. This converges to the state the CRM's events describe in timestamp
order, whatever order they arrive in. The lock makes check-then-apply atomic across workers, and
the ledger is written only while the lock is still ours (a fenced commit).

A merge (jobs/merges.py) locks every customer it touches, in one fixed order (sorted external ids, so
two merges never wait on each other in a circle), and commits their ledgers and the merged ids'
aliases in one fenced script. The lock hands back the customer's alias with its ledger, in the same
round trip: an event never writes to a merged-away id once its merge is committed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from redis import Redis
from rq import get_current_job

from crmsync.core.errors import CustomerLocked
from crmsync.core.keys import customer_alias_key, customer_lock_key, customer_state_key
from crmsync.core.redis_conn import as_text

from .redis_outage import REDIS_UNAVAILABLE

__all__ = ["Alias", "Ledger", "CustomerLedgers", "LockedCustomer"]

LOCK_MARGIN_SECONDS = 5
# A merge's mark on its records (`mark_merging`) outlives its retries: every retry rewrites it.
MERGING_TTL_SECONDS = 15 * 60

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
end
if redis.call('GET', KEYS[1]) == 'hold' then
  return {0, redis.call('PTTL', KEYS[1])}
end
return {0, -1}
"""
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2])
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
"""
# KEYS: n (lock, ledger) pairs, the alias keys, then the survivor's alias key if given (its merge is no
# longer under way). ARGV: n; per customer its token, ledger TTL, number of ledger items and the items;
# the aliases' TTL and count; per alias its fields' count and items.
_COMMIT_MERGE = """
local n = tonumber(ARGV[1])
local at = 2
for i = 1, n do
  if redis.call('GET', KEYS[2 * i - 1]) ~= ARGV[at] then
    return 0
  end
  at = at + 3 + tonumber(ARGV[at + 2])
end
at = 2
for i = 1, n do
  local count = tonumber(ARGV[at + 2])
  redis.call('DEL', KEYS[2 * i])
  if count > 0 then
    redis.call('HSET', KEYS[2 * i], unpack(ARGV, at + 3, at + 2 + count))
    redis.call('EXPIRE', KEYS[2 * i], ARGV[at + 1])
  end
  redis.call('DEL', KEYS[2 * i - 1])
  at = at + 3 + count
end
local alias_ttl = ARGV[at]
local aliases = tonumber(ARGV[at + 1])
at = at + 2
for k = 2 * n + 1, 2 * n + aliases do
  local count = tonumber(ARGV[at])
  redis.call('DEL', KEYS[k])
  redis.call('HSET', KEYS[k], unpack(ARGV, at + 1, at + count))
  redis.call('EXPIRE', KEYS[k], alias_ttl)
  at = at + 1 + count
end
for k = 2 * n + aliases + 1, #KEYS do
  redis.call('HDEL', KEYS[k], 'merging')
end
return 1
"""
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], 'hold', 'PX', ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Ledger:
    """What has been applied for one customer, as versions (see `Event.version`)."""

    fields: dict[str, str] = field(default_factory=dict)
    deleted: str = ""
    erased: str = ""
    latest: str = ""
    # The event that created the customer's platform record in its current life (a merge asks).
    created: str = ""

    @classmethod
    def from_redis(cls, pairs: dict[str, str]) -> Ledger:
        fields = {name[2:]: value for name, value in pairs.items() if name.startswith("f:")}
        return cls(fields, pairs.get("deleted", ""), pairs.get("erased", ""), pairs.get("latest", ""),
                   pairs.get("created", ""))  # fmt: skip

    def to_redis(self) -> list[str]:
        flat = [item for name, version in self.fields.items() for item in (f"f:{name}", version)]
        for name in ("deleted", "erased", "latest", "created"):
            if getattr(self, name):
                flat += [name, getattr(self, name)]
        return flat

    def fields_to_write(self, version: str, carried: dict[str, Any]) -> dict[str, Any]:
        """The subset of `carried` that this event may still write; empty means the event is stale.

        A delete or an erasure at or after `version` supersedes it: a late update must not bring back
        a deleted customer, nor personal data the person asked to erase.
        """
        if version <= self.deleted or version <= self.erased:
            return {}
        return {name: value for name, value in carried.items() if version > self.fields.get(name, "")}

    def after_write(self, version: str, written: dict[str, Any], created: bool = False) -> Ledger:
        return self.after_writes(dict.fromkeys(written, version), version if created else "")

    def after_writes(self, versions: dict[str, str], created: str = "") -> Ledger:
        """After one write whose fields each carried the value of its own version (coalescing);
        `created`: the version of the event whose write created the customer's record, if it did."""
        fields = {**self.fields, **versions}
        return replace(self, fields=fields, latest=max(self.latest, *versions.values()),
                       created=created or self.created)  # fmt: skip

    def written_at(self, version: str, carried: dict[str, Any]) -> bool:
        """Whether a field of `carried` holds the value of exactly `version`: the event was applied,
        by a write that coalesced it with another (or by an earlier attempt of this very job)."""
        return any(self.fields.get(name) == version for name in carried)

    def may_delete(self, version: str) -> bool:
        """A delete applies only if nothing newer (a re-create, an update) has been applied since."""
        return version > self.latest

    def after_delete(self, version: str) -> Ledger:
        # The customer's fields died with it: a newer create starts a new life from scratch.
        return replace(self, fields={}, deleted=version, latest=version, created="")

    def after_erasure(self, version: str) -> Ledger:
        return replace(self, erased=max(self.erased, version), latest=max(self.latest, version))


@dataclass(frozen=True)
class Alias:
    """A merged-away external id: merged into `survivor` by the merge at `version`. `kept` when its
    customer became the survivor's (re-keyed): its events older than the merge still describe that
    record, while a deleted one's are stale."""

    survivor: str
    version: str
    kept: bool = False

    @classmethod
    def from_redis(cls, pairs: Mapping[str, str]) -> Alias | None:
        if not pairs.get("survivor"):
            return None
        return cls(pairs["survivor"], pairs.get("version", ""), pairs.get("kept") == "1")

    def to_redis(self) -> list[str]:
        return ["survivor", self.survivor, "version", self.version, "kept", "1" if self.kept else "0"]

    def routes(self, version: str) -> bool:
        """Whether an event at `version` for the merged-away id applies to the survivor (else stale)."""
        return self.kept or version >= self.version


@dataclass
class LockedCustomer:
    """A customer whose lock this worker holds, with the ledger (and alias) read under that lock."""

    external_id: str
    ledger: Ledger
    token: str
    alias: Alias | None = None
    # Set by a successful commit, which deletes the lock in the same script.
    released: bool = False
    # The job id of a merge of this customer that began its platform steps and has not committed.
    merging: str = ""


class CustomerLedgers:
    """Locks and ledgers of all customers, in Redis (shared by every worker process)."""

    def __init__(
        self,
        redis: Redis,
        lock_ttl_seconds: int,
        ledger_ttl_seconds: int,
        wait_seconds: float,
        in_flight_hold_seconds: float = 0,
        lock_margin_seconds: float = LOCK_MARGIN_SECONDS,
        erased_ledger_ttl_seconds: int = 0,
    ) -> None:
        self._redis = redis
        self._lock_ttl_ms = lock_ttl_seconds * 1000
        # How long a job's lock outlives the job's timeout (a thread worker's job may run on past its
        # timeout until its API call returns: jobs/dyno.py adds that).
        self.lock_margin_seconds = lock_margin_seconds
        self._ledger_ttl = ledger_ttl_seconds
        # An erasure's mark must outlive the sender's redeliveries of older events by far: it keeps
        # them from bringing the person's data back. It lives as long as the erasure's audit record.
        self._erased_ledger_ttl = max(ledger_ttl_seconds, erased_ledger_ttl_seconds)
        self._wait = wait_seconds
        self._hold_ms = int(in_flight_hold_seconds * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._commit = redis.register_script(_COMMIT)
        self._commit_merge = redis.register_script(_COMMIT_MERGE)
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)
        # Locks this process could not hold or free because Redis was away: (key, token, hold).
        self._unsettled: list[tuple[str, str, bool]] = []

    @contextmanager
    def locked(self, external_id: str) -> Iterator[LockedCustomer]:
        """Hold the customer's lock for the block; raise CustomerLocked if it stays busy.

        After a failure whose outcome is unknown (a timeout, a dropped connection, a 5xx, the job
        stopped mid-request) the request may still be applied by the API later. The lock is then
        kept for `in_flight_hold_seconds`, so that no newer write for this customer can land before
        that late one and be overwritten by it; the retry re-applies once the hold has passed.
        Redis going away is no such failure (no request is in flight while Redis is called): the lock
        is freed, by `settle_after_outage` once Redis is back.
        """
        customer = self._lock(external_id)
        key = customer_lock_key(external_id)
        hold = False
        try:
            yield customer
        except BaseException as exc:
            unknown = not getattr(exc, "outcome_known", False) and not isinstance(exc, REDIS_UNAVAILABLE)
            hold = self._hold_ms > 0 and unknown
            raise
        finally:
            try:
                # After a commit the lock is gone already (one round trip less per applied event).
                if not customer.released:
                    self._settle(key, customer.token, hold)
            except REDIS_UNAVAILABLE:
                self._unsettled.append((key, customer.token, hold))

    def settle_after_outage(self) -> None:
        """Hold or free the locks left as they were when Redis went away (the worker calls this once
        Redis is back), rather than have their customers wait for the locks to expire."""
        while self._unsettled:
            self._settle(*self._unsettled[0])
            self._unsettled.pop(0)

    @contextmanager
    def locked_all(self, external_ids: Iterable[str]) -> Iterator[dict[str, LockedCustomer]]:
        """Hold the locks of every customer in `external_ids` for the block, taken in sorted order so
        that two workers locking overlapping sets never wait on each other in a circle."""
        with ExitStack() as stack:
            yield {external_id: stack.enter_context(self.locked(external_id))
                   for external_id in sorted(set(external_ids))}  # fmt: skip

    def mark_merging(self, customers: Iterable[LockedCustomer], job_id: str) -> None:
        """Mark `customers` (locked) as being merged by the job `job_id` until `commit_merge`: between its
        first platform step and its commit their records are half-merged, and their other events wait
        (jobs/merge_barrier.py). A merge that fails for good leaves the mark until it expires."""
        with self._redis.pipeline() as pipe:
            for customer in customers:
                pipe.hset(customer_alias_key(customer.external_id), "merging", job_id)
                pipe.expire(customer_alias_key(customer.external_id), MERGING_TTL_SECONDS)
            pipe.execute()

    def commit_merge(
        self,
        customers: Iterable[LockedCustomer],
        ledgers: Mapping[str, Ledger],
        aliases: Mapping[str, Alias],
        survivor: str | None = None,
    ) -> None:
        """Record every customer's ledger and the merged ids' aliases, and release the locks: all of it,
        only if every lock is still ours, or nothing. The merge is then no longer under way."""
        held = list(customers)
        keys: list[str] = []
        args: list[Any] = [len(held)]
        for customer in held:
            ledger = ledgers[customer.external_id]
            items = ledger.to_redis()
            keys += [customer_lock_key(customer.external_id), customer_state_key(customer.external_id)]
            args += [customer.token, self._erased_ledger_ttl if ledger.erased else self._ledger_ttl,
                     len(items), *items]  # fmt: skip
        # An alias must outlive the sender's redeliveries and late events by far, as an erasure's mark.
        args += [self._erased_ledger_ttl, len(aliases)]
        for external_id, alias in aliases.items():
            keys.append(customer_alias_key(external_id))
            args += [len(alias.to_redis()), *alias.to_redis()]
        if survivor is not None:
            keys.append(customer_alias_key(survivor))
        if not self._commit_merge(keys=keys, args=args):
            raise CustomerLocked("customer lock expired before the merge was recorded")
        for customer in held:
            customer.ledger = ledgers[customer.external_id]
            customer.released = True

    def read_alias(self, external_id: str) -> Alias | None:
        """The alias of `external_id` as it stands (without locking)."""
        stored = self._redis.hgetall(customer_alias_key(external_id))
        return Alias.from_redis({as_text(name): as_text(value) for name, value in stored.items()})

    def _settle(self, key: str, token: str, hold: bool) -> None:
        if hold:
            self._hold(keys=[key], args=[token, self._hold_ms])
        else:
            # After a commit the lock is already gone; this only frees it after a failure.
            self._release(keys=[key], args=[token])

    def commit(self, customer: LockedCustomer, ledger: Ledger) -> None:
        """Record `ledger` and release the lock, only if the lock is still ours."""
        keys = [customer_lock_key(customer.external_id), customer_state_key(customer.external_id)]
        ttl = self._erased_ledger_ttl if ledger.erased else self._ledger_ttl
        if not self._commit(keys=keys, args=[customer.token, ttl, *ledger.to_redis()]):
            # Our lock expired and another worker may have moved on: let a retry re-decide.
            raise CustomerLocked("customer lock expired before the ledger was written")
        customer.ledger = ledger
        customer.released = True

    def _lock_ttl_for_current_job(self) -> int:
        # RQ stops a job at its own timeout, so a lock that outlives it by a margin only ever
        # expires when its worker died — and then soon, so the job's retry is not held up.
        job = get_current_job()
        if job is not None and job.timeout and job.timeout > 0:
            return int((job.timeout + self.lock_margin_seconds) * 1000)
        return self._lock_ttl_ms

    def read(self, external_id: str) -> Ledger:
        """The ledger as it stands (without locking), for inspection."""
        stored = self._redis.hgetall(customer_state_key(external_id))
        return Ledger.from_redis({as_text(name): as_text(value) for name, value in stored.items()})

    def _lock(self, external_id: str) -> LockedCustomer:
        token = secrets.token_hex(16)
        keys = [customer_lock_key(external_id), customer_state_key(external_id),
                customer_alias_key(external_id)]  # fmt: skip
        deadline = time.monotonic() + self._wait
        delay = 0.005
        ttl_ms = self._lock_ttl_for_current_job()
        while True:
            acquired, found, *alias = self._acquire(keys=keys, args=[token, ttl_ms])
            if acquired:
                aliased = _pairs(alias[0])
                ledger = Ledger.from_redis(_pairs(found))
                return LockedCustomer(external_id, ledger, token, Alias.from_redis(aliased),
                                      merging=aliased.get("merging", ""))  # fmt: skip
            # A hold after an unanswered request that outlasts the wait is not waited for: the job
            # is retried when it ends, and the worker moves on. A working lock is waited for.
            held_for = int(found) / 1000
            if held_for > 0 and time.monotonic() + held_for > deadline:
                raise CustomerLocked("the customer is held after an unanswered request", retry_after=held_for)
            if time.monotonic() >= deadline:
                raise CustomerLocked("another worker is applying an event for this customer", retry_after=1)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _pairs(flat: list[Any]) -> dict[str, str]:
    """A HGETALL reply, as Lua hands it back (a flat list), as text."""
    return {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat), 2)}
