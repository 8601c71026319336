"""Merges (customer.merged) applied as one operation, and the aliases that route events after them.

A merge names its survivor (`external_id`) and the ids merged into it (`merged_ids`, in order of
preference). Applying it:

1. locks the survivor and every merged id, in sorted order (jobs/ordering.py), and reads their
   ledgers and aliases under those locks; waits (retried later) while an older event of one of them
   is still to run (jobs/merge_barrier.py), then marks them as being merged: from there to the
   commit their other events wait;
2. keeps the survivor's platform customer; if it has none, the first merged id that has one is
   re-keyed to the survivor with `updateCustomer(externalId)` (recorded first in `merge_steps_key`,
   so a retry after a lost answer knows where the survivor's record came from);
3. deletes the other merged ids' customers (looked up by their own external id, so a retry can never
   find, let alone delete, the survivor);
4. re-applies to the survivor what events newer than the merge wrote to a merged id before the merge
   arrived (reordered deliveries), from those events' own payloads;
5. commits in one fenced script: the survivor's ledger, a tombstone per merged id, and each merged
   id's alias (survivor, the merge's version, whether its record was kept).

Every platform step is looked up again on a retry, and nothing is recorded before the commit, so a
crash or a lost answer anywhere is repaired by the retry. Events for a merged id are then routed to
the survivor (`locked_for_event`) — those older than the merge are stale, except for the record that
was kept, whose older events still describe the survivor's record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from rq import get_current_job

from crmsync.core.errors import CustomerLocked, CustomerNotYetCreated, PermanentError
from crmsync.core.events import CUSTOMER_FIELDS, Event
from crmsync.core.keys import MERGE_STEPS_TTL_SECONDS, job_id_for, merge_steps_key, payload_key
from crmsync.core.redis_conn import as_text

from .customers import delete_customer, find_customer, find_customer_id, rekey_customer, upsert_customer
from .merge_barrier import wait_while_merging
from .ordering import Alias, CustomerLedgers, Ledger, LockedCustomer
from .runtime import Runtime

__all__ = ["merge_customers", "locked_for_event", "survivor_of"]

log = logging.getLogger("crmsync.jobs")

# Aliases may chain (a survivor merged away in its turn); a longer chain than this is a cycle.
_MAX_HOPS = 32


@contextmanager
def locked_for_event(
    ledgers: CustomerLedgers, external_id: str, version: str | None
) -> Iterator[LockedCustomer | None]:
    """Lock the customer an event for `external_id` at `version` applies to: the id itself, or the
    survivor of the merges it went through. None: the event is older than a merge that deleted its
    record (stale). `version=None` follows every alias (an erasure reaches the survivor's data)."""
    current = external_id
    for _ in range(_MAX_HOPS):
        with ledgers.locked(current) as customer:
            wait_while_merging([customer])
            if customer.alias is None:
                yield customer
                return
        # The lock is released: the event belongs elsewhere.
        if version is not None and not customer.alias.routes(version):
            yield None
            return
        current = customer.alias.survivor
    raise PermanentError("the merge aliases of this external id form a cycle")


def survivor_of(ledgers: CustomerLedgers, external_id: str) -> str:
    """The id `external_id` lives on as after every merge committed so far (itself if none)."""
    current = external_id
    for _ in range(_MAX_HOPS):
        alias = ledgers.read_alias(current)
        if alias is None:
            return current
        current = alias.survivor
    raise PermanentError("the merge aliases of this external id form a cycle")


def merge_customers(runtime: Runtime, event: Event) -> str:
    """merged: keep the survivor's customer (or re-key the first merged one), delete the others,
    and make every merged id an alias of the survivor."""
    survivor = survivor_of(runtime.ledgers, event.external_id)
    merged = [m for m in dict.fromkeys(str(i) for i in event.data["merged_ids"]) if m != survivor]
    with runtime.ledgers.locked_all([survivor, *merged]) as locked:
        if locked[survivor].alias is not None:
            raise CustomerLocked("the survivor was merged away meanwhile; the merge is re-decided on retry")
        pending = [m for m in merged if locked[m].alias is None]
        if not pending:
            return "stale"  # every merged id is an alias already: a redelivery
        job, merging = get_current_job(), [locked[external_id] for external_id in [survivor, *pending]]
        wait_while_merging(merging, job)
        runtime.merges.wait_for_older_events(event, job, [survivor, *pending])
        if job is not None:
            runtime.ledgers.mark_merging(merging, job.id)
        for merged_id in pending:
            # First: a merged id's cached platform id may name the record re-keyed to the survivor.
            runtime.ids.drop(merged_id)
        kept, taken = _keep_survivor_record(runtime, event, survivor, locked[survivor].ledger, pending)
        for merged_id in pending:
            # By its own external id: a record re-keyed to the survivor is not found, so never deleted.
            delete_customer(runtime.customers, merged_id)
        ledger = locked[survivor].ledger
        if kept is not None:
            ledger = _inherit(ledger, locked[kept].ledger, taken)
        for merged_id in pending:
            ledger = _move_later_writes(runtime, event.version, survivor, locked[merged_id].ledger, ledger)
        ledgers = {external_id: customer.ledger for external_id, customer in locked.items()}
        ledgers[survivor] = replace(ledger, latest=max(ledger.latest, event.version))
        for merged_id in pending:
            ledgers[merged_id] = locked[merged_id].ledger.after_delete(event.version)
        aliases = {m: Alias(survivor, event.version, kept=m == kept) for m in pending}
        runtime.ledgers.commit_merge(locked.values(), ledgers, aliases, survivor)
    return "applied"


def _keep_survivor_record(
    runtime: Runtime, event: Event, survivor: str, ledger: Ledger, pending: list[str]
) -> tuple[str | None, tuple[str, ...]]:
    """Make sure the survivor has the record of the first merged id that has a customer, when it has
    none of its own; return that merged id and the fields the survivor took from it (None: the
    survivor keeps its own record, or no record exists).

    A survivor's customer made only by events after the merge that arrived before it (the survivor
    is a new id, as HubSpot's `newObjectId`) has no record of its own: it takes the merged record's
    values of the fields those events did not write, and the merged customer is deleted after.
    What was taken is written to `merge_steps_key` before the call, for a retry after a lost answer."""
    steps = merge_steps_key(event.webhook_id)
    survivor_id = find_customer_id(runtime.customers, survivor)
    if survivor_id is not None:
        # Taken by an earlier attempt whose answer was lost? That record's customer is gone now.
        recorded = runtime.redis.get(steps)
        earlier, _, fields = (as_text(recorded) if recorded is not None else "").partition("|")
        if earlier in pending and find_customer_id(runtime.customers, earlier) is None:
            return earlier, tuple(fields.split(",")) if fields else ()
        if not _made_after(ledger, event.version):
            return None, ()
    for merged_id in pending:
        found = find_customer(runtime.customers, merged_id)
        if found is None:
            continue
        if survivor_id is None:
            runtime.redis.set(steps, f"{merged_id}|{','.join(CUSTOMER_FIELDS)}", ex=MERGE_STEPS_TTL_SECONDS)
            rekey_customer(runtime.customers, found["id"], survivor, runtime.ids, previous=merged_id)
            return merged_id, CUSTOMER_FIELDS
        # Not the name: the survivor has one (it was created with it), and the merged record holds
        # this one until it is deleted.
        taken = tuple(name for name in ("description", "labels") if name not in ledger.fields)
        runtime.redis.set(steps, f"{merged_id}|{','.join(taken)}", ex=MERGE_STEPS_TTL_SECONDS)
        if taken:
            upsert_customer(runtime.customers, survivor, {name: found[name] for name in taken})
        return merged_id, taken
    return None, ()


def _made_after(ledger: Ledger, merged_at: str) -> bool:
    """Whether the survivor's customer was created by an event after the merge."""
    return ledger.created > merged_at


def _inherit(survivor: Ledger, kept: Ledger, taken: tuple[str, ...]) -> Ledger:
    """The survivor's ledger once it holds the kept record's values of the fields `taken`, and the
    kept record's erasure mark (its data is the survivor's now).

    A field of `taken` the survivor's ledger holds already was written on the platform after the kept
    record's value: by an event for the survivor between an attempt of this merge that re-keyed (or
    took) the record and this retry. The platform holds that event's value whatever the versions, so
    the survivor's version stands; a newer write of the kept record (after the merge) is moved, as
    any merged record's."""
    fields = {name: version for name, version in kept.fields.items() if name in taken}
    return replace(survivor, fields={**fields, **survivor.fields}, erased=max(survivor.erased, kept.erased))


def _move_later_writes(
    runtime: Runtime, merged_at: str, survivor: str, merged: Ledger, ledger: Ledger
) -> Ledger:
    """Apply to the survivor what events newer than the merge wrote to a merged id before the merge
    arrived (they belong to the survivor), from their payloads; return the survivor's ledger after."""
    for version in sorted({v for v in merged.fields.values() if v > merged_at}):
        later = _event_at(runtime, version)
        if later is None:
            log.warning("a write after a merge cannot be moved: its event is gone",
                        extra={"event": "merge_write_lost", "external_id": survivor})  # fmt: skip
            continue
        carried = later.customer_fields()
        wrote = {name: value for name, value in carried.items() if merged.fields.get(name) == version}
        fields = ledger.fields_to_write(version, wrote)
        if not fields:
            continue
        try:
            written = upsert_customer(
                runtime.customers, survivor, fields, runtime.settings.name_conflict_policy
            )
        except CustomerNotYetCreated:
            continue  # no record to write to, and no name to create one with: nothing to keep
        ledger = ledger.after_write(version, fields, written.created)
    return ledger


def _event_at(runtime: Runtime, version: str) -> Event | None:
    """The event whose version is `version`, from its job's payload (None once it has expired)."""
    webhook_id = version.partition("|")[2]
    raw = runtime.redis.get(payload_key(job_id_for(webhook_id)))
    if raw is None:
        return None
    payload: dict[str, Any] = json.loads(raw)
    event = Event.from_payload(payload)
    return event if event.version == version else None
