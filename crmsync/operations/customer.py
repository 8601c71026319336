"""One customer as crmsync sees it: "why does the platform show *this* for customer X?"

Its ordering ledger — the version (CRM timestamp and webhook id) that last wrote each field, the
tombstone, the erasure mark, a hold or a working lock — and its jobs: queued, scheduled, running,
failed, and the recently finished ones with their outcomes. Identifiers, versions and outcomes only:
nothing here reads an event's values, so nothing here can show a name or a description. Behind both
`crmsync customer EXTERNAL_ID` and the dashboard's customer page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from crmsync.core.events import parse_version
from crmsync.core.keys import customer_alias_key, customer_jobs_key, customer_lock_key, customer_state_key
from crmsync.core.queue import EventJob, app_queue, job_summary
from crmsync.core.redis_conn import as_text
from jobs.ordering import Alias, Ledger

__all__ = ["Version", "CustomerJob", "CustomerView", "read_customer", "MAX_JOBS"]

# The jobs shown, newest first: a customer's index holds every job accepted for it for 62 days.
MAX_JOBS = 100
# Job states in the order an operator reads them: what is still to happen first.
STATUS_ORDER = ("started", "queued", "scheduled", "deferred", "failed", "finished", "canceled", "stopped")


@dataclass(frozen=True)
class Version:
    """An event's place in the customer's history: its CRM timestamp, then its webhook id."""

    timestamp: str
    webhook_id: str

    @classmethod
    def parse(cls, version: str) -> Version | None:
        """A ledger's version (see `Event.version`) as a UTC time and a webhook id; None when empty."""
        if not version:
            return None
        moment, webhook_id = parse_version(version)
        return cls(moment.isoformat(timespec="microseconds").replace("+00:00", "Z"), webhook_id)


@dataclass(frozen=True)
class CustomerJob:
    """One job of the customer: what it is, where it is now, and how it ended."""

    job_id: str
    webhook_id: str
    type: str
    event_timestamp: str
    status: str
    enqueued_at: str | None = None
    ended_at: str | None = None
    scheduled_for: str | None = None
    outcome: str | None = None
    failure_class: str | None = None
    attempts: int = 0
    replays: int = 0
    superseded_by_erasure: str | None = None


@dataclass(frozen=True)
class CustomerView:
    """The customer's ledger and jobs; `hold_seconds` is set while a hold keeps newer writes out."""

    external_id: str
    fields: dict[str, Version | None]
    deleted: Version | None
    erased: Version | None
    latest: Version | None
    locked: bool
    hold_seconds: float | None
    jobs: list[CustomerJob] = field(default_factory=list)
    more_jobs: int = 0
    # Set once the record was merged away: its later events go to `merged_into` (jobs/merges.py).
    merged_into: str | None = None
    merged_at: Version | None = None

    @property
    def known(self) -> bool:
        return bool(self.latest or self.jobs or self.locked or self.merged_into)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_customer(redis: Redis, queue_name: str, external_id: str) -> CustomerView:
    """Read the customer's ledger, lock and jobs (a handful of round trips, no values)."""
    lock_key = customer_lock_key(external_id)
    with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(customer_state_key(external_id))
        pipe.get(lock_key)
        pipe.pttl(lock_key)
        pipe.smembers(customer_jobs_key(external_id))
        pipe.hgetall(customer_alias_key(external_id))
        stored, lock, lock_ttl_ms, members, aliased = pipe.execute()
    ledger = Ledger.from_redis({as_text(name): as_text(value) for name, value in stored.items()})
    # After a request whose outcome is unknown, the lock's value is "hold" (jobs/ordering.py).
    held = lock is not None and as_text(lock) == "hold" and lock_ttl_ms > 0
    jobs = _jobs(redis, queue_name, sorted(as_text(member) for member in members))
    alias = Alias.from_redis({as_text(name): as_text(value) for name, value in aliased.items()})
    return CustomerView(
        external_id=external_id,
        fields={name: Version.parse(version) for name, version in sorted(ledger.fields.items())},
        deleted=Version.parse(ledger.deleted),
        erased=Version.parse(ledger.erased),
        latest=Version.parse(ledger.latest),
        locked=lock is not None and not held,
        hold_seconds=lock_ttl_ms / 1000 if held else None,
        jobs=jobs[:MAX_JOBS],
        more_jobs=max(0, len(jobs) - MAX_JOBS),
        merged_into=alias.survivor if alias else None,
        merged_at=Version.parse(alias.version) if alias else None,
    )


def _jobs(redis: Redis, queue_name: str, job_ids: list[str]) -> list[CustomerJob]:
    queue = app_queue(redis, queue_name)
    found = [job for job in EventJob.fetch_many(job_ids, connection=redis, serializer=JSONSerializer) if job]
    with redis.pipeline(transaction=False) as pipe:
        for job in found:
            pipe.zscore(queue.scheduled_job_registry.key, job.id)
        scheduled = pipe.execute()
    jobs = [_customer_job(job, at) for job, at in zip(found, scheduled, strict=True)]
    # Newest event first, as the ledger reads: the top one is the latest word of the CRM.
    jobs.sort(key=lambda job: (job.event_timestamp, job.webhook_id), reverse=True)
    return jobs


def _customer_job(job: Job, scheduled_at: float | None) -> CustomerJob:
    meta = job.meta
    ids = job_summary(job)
    status = job.get_status(refresh=False)
    result = job.return_value(refresh=True) if status and status.value == "finished" else None
    return CustomerJob(
        job_id=job.id,
        webhook_id=str(ids.get("webhook_id", "")),
        type=str(ids.get("type", "")),
        event_timestamp=str(ids.get("event_timestamp", "")),
        status=status.value if status else "unknown",
        enqueued_at=_iso(job.enqueued_at),
        ended_at=_iso(job.ended_at),
        scheduled_for=_iso(datetime.fromtimestamp(scheduled_at, UTC)) if scheduled_at else None,
        outcome=str(result["outcome"]) if isinstance(result, dict) and "outcome" in result else None,
        failure_class=str(meta["failure_class"]) if meta.get("failure_class") else None,
        attempts=len(meta.get("attempts", [])) + len(meta.get("earlier_attempts", [])),
        replays=int(meta.get("replays", 0)),
        superseded_by_erasure=str(meta["superseded_by_erasure"])
        if meta.get("superseded_by_erasure")
        else None,
    )


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.isoformat(timespec="seconds").replace("+00:00", "Z")
