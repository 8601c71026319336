"""The RQ job: apply one CRM event to the platform, in order, exactly once in effect.

Each function below reads as the business rule it applies. Failures are classified (crmsync.core.errors):
retryable ones are rescheduled with jittered backoff (honouring Retry-After), permanent ones skip the
remaining retries. Messages are redacted of the event's personal values before RQ stores them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC
from functools import partial
from typing import Any

from rq import get_current_job
from rq.utils import utcparse

from crmsync.core.counters import outcome_of, record_freshness, record_job
from crmsync.core.errors import CustomerLocked, CustomerNotYetCreated, SyncError
from crmsync.core.events import (
    CUSTOMER_CREATED,
    CUSTOMER_DELETED,
    CUSTOMER_MERGED,
    CUSTOMER_UPDATED,
    ERASURE_REQUESTED,
    Event,
)
from crmsync.core.queue import will_retry
from crmsync.core.redaction import redact
from crmsync.erasure.audit import ErasureAudit
from crmsync.erasure.customer_record import apply_customer_action
from crmsync.erasure.purchases import erase_personal_data
from crmsync.erasure.scrub import SUPERSEDED, scrub_current_job, scrub_customer_jobs

from .attempts import add_attempt
from .coalescing import QueuedEvent, coalesce
from .customers import clear_description, delete_customer, upsert_customer
from .merge_barrier import MergeWaiting, wait_while_merging
from .merges import locked_for_event, merge_customers
from .personal_data import anonymise_purchase
from .retry import next_delay
from .runtime import Runtime, for_current_job

__all__ = ["apply_event"]

log = logging.getLogger("crmsync.jobs")


def apply_event(payload: dict[str, Any]) -> dict[str, str]:
    """RQ entry point: apply the event in `payload` (plain JSON, as enqueued by the web side)."""
    event = Event.from_payload(payload)
    runtime = for_current_job()
    started = time.perf_counter()
    if payload.get(SUPERSEDED):
        # Scrubbed by an erasure (crmsync.erasure.scrub): its data is gone, and a replay must not act on it.
        _log(event, "superseded", started)
        return {"outcome": "superseded"}
    try:
        outcome = APPLIERS[event.type](runtime, event)
    except SyncError as exc:
        exc.args = (redact(str(exc), event.personal_values()),)
        _schedule_retry_or_give_up(runtime, event, exc)
        failed = "retried" if will_retry(get_current_job()) else "failed"
        record_job(runtime.redis, event.type, failed, time.perf_counter() - started)
        raise
    _log(event, outcome, started)
    record_job(runtime.redis, event.type, outcome_of(outcome), time.perf_counter() - started)
    return {"outcome": outcome}


def sync_customer(runtime: Runtime, event: Event) -> str:
    """created/updated: write the fields no newer event has written (create the customer if absent),
    together with the customer's other updates already queued (jobs/coalescing.py); on the survivor if
    the customer was merged away."""
    carried = event.customer_fields()
    with locked_for_event(runtime.ledgers, event.external_id, event.version) as customer:
        if customer is None:
            return "stale"  # older than the merge that deleted this record
        ledger = customer.ledger
        if not ledger.fields_to_write(event.version, carried):
            _forget_if_erased(ledger.erased, event)
            if ledger.written_at(event.version, carried):
                return "coalesced"  # applied by a write that carried it with an earlier-taken event
            return "stale" if carried else "noop"
        # An event routed to a merge's survivor is applied alone: the queue indexes it by its own id.
        queued = _queued_with(runtime, event) if customer.external_id == event.external_id else []
        write = coalesce(ledger, [event, *(other.event for other in queued)])
        carried_events = write.carried_by([other.event for other in queued])
        try:
            written = upsert_customer(runtime.customers, customer.external_id, write.fields,
                                      runtime.settings.name_conflict_policy, runtime.ids,
                                      may_exist=bool(ledger.fields) or _is_retry())  # fmt: skip
        except SyncError as exc:
            _list_coalesced(exc, carried_events)
            if isinstance(exc, CustomerNotYetCreated):
                # A new survivor's record comes with its merge: wait for it rather than spend retries.
                runtime.merges.wait_for_merge_into(event, get_current_job())
            raise
        answered = time.time()
        # The first write of the customer's life: a retry after a create whose answer was lost
        # finds the customer and updates it, but it is still the event that made it (jobs/merges.py).
        created = event.version if written.created or not ledger.fields else ""
        runtime.ledgers.commit(customer, ledger.after_writes(write.versions, created))
    enqueued = [other.enqueued_at for other in queued if other.event in carried_events]
    record_freshness(runtime.redis, _freshness(answered, enqueued))
    return "applied"


def _queued_with(runtime: Runtime, event: Event) -> list[QueuedEvent]:
    """The customer's other queued events to coalesce with `event`; none when coalescing is off or a
    barrier (a delete, a merge, an erasure) is queued."""
    job = get_current_job()
    if runtime.queued is None or job is None:
        return []
    return runtime.queued.of(event.external_id, job.id) or []


def _is_retry() -> bool:
    """Whether an attempt of this job failed before: its create may have been applied unanswered."""
    job = get_current_job()
    return job is not None and bool(job.meta.get("attempts") or job.meta.get("earlier_attempts"))


def _list_coalesced(exc: SyncError, events: list[Event]) -> None:
    """A failed coalesced write: the failure names every event it carried (ids only, for operators,
    oldest first), and its message is redacted of their values too."""
    job = get_current_job()
    if job is not None:
        job.meta["coalesced"] = [
            other.webhook_id for other in sorted(events, key=lambda other: other.version)
        ]
    if events:
        exc.args = (redact(str(exc), [value for other in events for value in other.personal_values()]),)


def _freshness(answered: float, enqueued: list[str]) -> list[float]:
    """Seconds from each applied event's enqueue to the write's answer: the taken job's and `enqueued`
    (RQ's enqueued_at of the others it carried)."""
    job = get_current_job()
    stamps = [utcparse(stamp).replace(tzinfo=UTC) for stamp in enqueued if stamp]
    if job is not None and job.enqueued_at is not None:
        stamps.append(job.enqueued_at.replace(tzinfo=UTC))
    return [max(0.0, answered - stamp.timestamp()) for stamp in stamps]


def remove_customer(runtime: Runtime, event: Event) -> str:
    """deleted: delete unless something newer was applied; leave a tombstone against late updates.
    A merged-away id's delete is never passed on to its survivor: the record it names is gone, and
    CRMs report the losers of a merge as deleted (Salesforce's IsDeleted, Pipedrive's delete)."""
    with runtime.ledgers.locked(event.external_id) as customer:
        wait_while_merging([customer])
        if customer.alias is not None or not customer.ledger.may_delete(event.version):
            return "stale"
        delete_customer(runtime.customers, event.external_id, runtime.ids)
        runtime.ledgers.commit(customer, customer.ledger.after_delete(event.version))
    return "applied"


def erase_customer_data(runtime: Runtime, event: Event) -> str:
    """erasure_requested: anonymise every purchase, apply ERASURE_CUSTOMER_ACTION, then forget every
    queued copy of the customer's data; older events for the customer become stale. Each step is
    recorded in the audit trail (crmsync/erasure/audit.py); a refused purchase fails the erasure only
    after every other one was erased. For a merged-away id, the customer action and the scrub reach
    the survivor, where the record's data lives now."""
    audit = ErasureAudit.of(runtime.redis, runtime.settings)
    erasure_id, external_id = event.webhook_id, event.external_id
    customer_action = runtime.settings.erasure_customer_action
    try:
        with locked_for_event(runtime.ledgers, external_id, None) as customer:
            assert customer is not None  # every version is routed
            survivor = customer.external_id
            purchase_ids = event.data["purchase_ids"]
            purchases = erase_personal_data(
                partial(anonymise_purchase, runtime.personal_data),
                runtime.redis, erasure_id, external_id, purchase_ids, audit,
            )  # fmt: skip
            ledger, action = apply_customer_action(
                customer_action, customer.ledger, event.version,
                clear_description=partial(clear_description, runtime.customers, survivor, runtime.ids),
                delete_customer=partial(delete_customer, runtime.customers, survivor, runtime.ids),
            )  # fmt: skip
            if action:
                audit.customer(erasure_id, external_id, action)
            runtime.ledgers.commit(customer, ledger.after_erasure(event.version))
        # Jobs accepted or finished since the web side scrubbed, or running then, are scrubbed now.
        scrubbed = scrub_customer_jobs(runtime.redis, event)
        if survivor != external_id:
            on_survivor = scrub_customer_jobs(runtime.redis, _for_customer(event, survivor))
            scrubbed.scrubbed += on_survivor.scrubbed
            scrubbed.running += on_survivor.running
        if scrubbed.scrubbed:
            audit.scrubbed(erasure_id, external_id, scrubbed.scrubbed)
        if scrubbed.running:
            raise CustomerLocked("a job for this customer is still running; its data is scrubbed on retry")
        purchases.raise_if_refused()
    except SyncError as exc:
        if is_final_attempt(exc):
            audit.failed(erasure_id, external_id, exc.failure_class, str(exc))
        raise
    audit.completed(erasure_id, external_id)
    return "applied"


def _for_customer(event: Event, external_id: str) -> Event:
    """`event` as if sent for `external_id` (an erasure reaching a merge's survivor)."""
    return Event(event.webhook_id, event.type, event.timestamp, {**event.data, "external_id": external_id})


def _forget_if_erased(erased: str, event: Event) -> None:
    """A stale event at or before an erasure (`erased`, its version) must not keep the person's data
    in Redis either: the job drops it from its own payload before RQ stores the job as finished."""
    if erased and event.version <= erased:
        scrub_current_job(erased.partition("|")[2])


APPLIERS: dict[str, Callable[[Runtime, Event], str]] = {
    CUSTOMER_CREATED: sync_customer,
    CUSTOMER_UPDATED: sync_customer,
    CUSTOMER_DELETED: remove_customer,
    ERASURE_REQUESTED: erase_customer_data,
    CUSTOMER_MERGED: merge_customers,
}


def is_final_attempt(exc: SyncError) -> bool:
    """Whether this failure ends the job's retries (the queue's one retry rule)."""
    return not exc.retryable or not will_retry(get_current_job())


def _schedule_retry_or_give_up(runtime: Runtime, event: Event, exc: SyncError) -> None:
    """Record this attempt on the job, then either set the next retry's delay or end the retries."""
    job = get_current_job()
    if job is None:
        return
    attempts = add_attempt(job, exc.failure_class, str(exc))
    retry_in: int | None = None
    if not exc.retryable:
        job.retries_left = 0
    elif isinstance(exc, MergeWaiting):
        # A wait for older events, not a failure: the retry RQ takes now is given back.
        job.retries_left = (job.retries_left or 0) + 1
        retry_in = math.ceil(exc.retry_after or 0)
        job.retry_intervals = [retry_in]
    elif will_retry(job):
        retry_in = next_delay(runtime.settings.retry_schedule, attempts - 1, exc.retry_after)
        # RQ reads the next interval from this list; setting it per failure gives jitter and Retry-After.
        job.retry_intervals = [retry_in]
    job.save_meta()
    log.warning(
        "event failed",
        extra={
            "event": "job_failed",
            "webhook_id": event.webhook_id,
            "job_id": job.id,
            "type": event.type,
            "external_id": event.external_id,
            "failure_class": exc.failure_class,
            "attempt": attempts,
            "retry_in_s": retry_in,
        },
    )


def _log(event: Event, outcome: str, started: float) -> None:
    job = get_current_job()
    log.info(
        "event applied" if outcome == "applied" else f"event {outcome}",
        extra={
            "event": "job_done",
            "webhook_id": event.webhook_id,
            "job_id": job.id if job else None,
            "type": event.type,
            "external_id": event.external_id,
            "outcome": outcome,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
