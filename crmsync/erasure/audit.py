"""The erasure audit trail: every step of every GDPR erasure, kept as proof, without personal data.

An erasure is a legal obligation with a deadline, so each one leaves a trace an operator can show:
when it was received, what happened to each purchase, when it completed or why it failed. One Redis
stream holds one entry per step (identifiers, outcomes and API messages only); entries older than
ERASURE_AUDIT_RETENTION_DAYS are trimmed on every write. Listing folds the entries into one record
per erasure, with its status and whether it is overdue (not completed ERASURE_DEADLINE_DAYS after it
was received). Erasures are rare (a handful a month), so listing reads the whole stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis import Redis

from crmsync.core.keys import ERASURE_AUDIT_KEY
from crmsync.core.redis_conn import as_text
from crmsync.core.settings import Settings

__all__ = ["ErasureAudit", "ErasureRecord", "list_erasures", "erasure_summary", "STATUSES"]

STATUSES = ("pending", "completed", "failed")
_PAGE = 500


@dataclass
class ErasureRecord:
    """One erasure as the audit trail tells it."""

    webhook_id: str
    external_id: str
    received_at: datetime
    deadline: datetime
    purchase_ids: list[int] = field(default_factory=list)
    purchases: dict[int, str] = field(default_factory=dict)  # the latest outcome of each purchase
    status: str = "pending"
    completed_at: datetime | None = None
    failure: str = ""
    steps: list[dict[str, str]] = field(default_factory=list)

    def overdue(self, now: datetime) -> bool:
        """Not completed by its deadline: the legal one-month window is (about to be) missed."""
        return self.status != "completed" and now > self.deadline

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The record as plain JSON (CLI, dashboard), steps left out."""
        return {
            "webhook_id": self.webhook_id,
            "external_id": self.external_id,
            "status": self.status,
            "overdue": self.overdue(now),
            "received_at": self.received_at.isoformat(timespec="seconds"),
            "deadline": self.deadline.isoformat(timespec="seconds"),
            "completed_at": self.completed_at.isoformat(timespec="seconds") if self.completed_at else None,
            "purchase_ids": self.purchase_ids,
            "purchases": {str(pid): outcome for pid, outcome in self.purchases.items()},
            "failure": self.failure,
        }


class ErasureAudit:
    """Writes the steps of erasures to the audit stream."""

    def __init__(self, redis: Redis, retention_days: int) -> None:
        self._redis = redis
        self._retention_ms = retention_days * 86_400_000

    @classmethod
    def of(cls, redis: Redis, settings: Settings) -> ErasureAudit:
        return cls(redis, settings.erasure_audit_retention_days)

    def received(self, webhook_id: str, external_id: str, purchase_ids: list[int]) -> None:
        self._add(webhook_id, external_id, "received", purchase_ids=",".join(map(str, purchase_ids)))

    def purchase(
        self, webhook_id: str, external_id: str, purchase_id: int, outcome: str, message: str = ""
    ) -> None:
        """One attempt at one purchase: `erased`, `not_found`, `rejected` or `failed` (retried)."""
        self._add(webhook_id, external_id, "purchase", purchase_id=str(purchase_id), outcome=outcome,
                  message=message)  # fmt: skip

    def customer(self, webhook_id: str, external_id: str, outcome: str) -> None:
        """What ERASURE_CUSTOMER_ACTION did to the customer record (`anonymized`, `deleted`, `absent`)."""
        self._add(webhook_id, external_id, "customer", outcome=outcome)

    def scrubbed(self, webhook_id: str, external_id: str, job_ids: list[str]) -> None:
        """Jobs of the customer whose personal data was removed from Redis."""
        self._add(webhook_id, external_id, "scrubbed", jobs=",".join(job_ids))

    def completed(self, webhook_id: str, external_id: str) -> None:
        self._add(webhook_id, external_id, "completed")

    def failed(self, webhook_id: str, external_id: str, failure_class: str, message: str) -> None:
        """The erasure gave up (a permanent failure, or its retries ran out): someone must act."""
        self._add(webhook_id, external_id, "failed", failure_class=failure_class, message=message)

    def _add(self, webhook_id: str, external_id: str, step: str, **fields: str) -> None:
        entry = {"erasure": webhook_id, "external_id": external_id, "step": step, **fields}
        oldest = int(time.time() * 1000) - self._retention_ms
        # Exact trimming: erasures are rare, and an approximate one keeps small streams whole.
        self._redis.xadd(ERASURE_AUDIT_KEY, entry, minid=f"{oldest}-0", approximate=False)  # type: ignore[arg-type]


def list_erasures(redis: Redis, deadline_days: int) -> list[ErasureRecord]:
    """Every erasure in the audit trail, newest first, folded from its steps."""
    records: dict[str, ErasureRecord] = {}
    for entry_id, entry in _entries(redis):
        at = datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, UTC)
        webhook_id = entry["erasure"]
        record = records.get(webhook_id)
        if record is None:
            deadline = at + timedelta(days=deadline_days)
            record = records[webhook_id] = ErasureRecord(webhook_id, entry["external_id"], at, deadline)
        _apply(record, entry, at)
    return sorted(records.values(), key=lambda record: record.received_at, reverse=True)


def erasure_summary(redis: Redis, deadline_days: int, now: datetime | None = None) -> dict[str, int]:
    """How many erasures are pending, completed, failed and overdue: for /metrics and the dashboard."""
    now = now or datetime.now(UTC)
    counts = dict.fromkeys((*STATUSES, "overdue"), 0)
    for record in list_erasures(redis, deadline_days):
        counts[record.status] += 1
        counts["overdue"] += record.overdue(now)
    return counts


def _apply(record: ErasureRecord, entry: dict[str, str], at: datetime) -> None:
    step = entry["step"]
    record.steps.append({"at": at.isoformat(timespec="milliseconds"), **entry})
    if step == "received":
        record.purchase_ids = [int(pid) for pid in entry.get("purchase_ids", "").split(",") if pid]
    elif step == "purchase":
        record.purchases[int(entry["purchase_id"])] = entry["outcome"]
    elif step == "completed":
        # A failed erasure replayed later may still complete: the latest verdict stands.
        record.status, record.completed_at, record.failure = "completed", at, ""
    elif step == "failed":
        record.status, record.completed_at = "failed", None
        record.failure = f"{entry.get('failure_class', '')}: {entry.get('message', '')}"


def _entries(redis: Redis) -> Iterator[tuple[str, dict[str, str]]]:
    start = "-"
    while True:
        page = cast(
            list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(ERASURE_AUDIT_KEY, min=start, count=_PAGE)
        )
        for entry_id, fields in page:
            yield as_text(entry_id), {as_text(name): as_text(value) for name, value in fields.items()}
        if len(page) < _PAGE:
            return
        start = "(" + as_text(page[-1][0])
