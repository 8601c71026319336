"""The erasure audit trail as operators filter and count it (`crmsync erasures`, the dashboard)."""

from __future__ import annotations

from datetime import datetime

from crmsync.erasure.audit import STATUSES, ErasureRecord

__all__ = ["ERASURE_STATUSES", "with_status", "erasure_counts"]

# As `crmsync erasures --status`: "overdue" picks the pending and failed ones past their deadline.
ERASURE_STATUSES = (*STATUSES, "overdue")


def with_status(records: list[ErasureRecord], status: str | None, now: datetime) -> list[ErasureRecord]:
    """The `records` that pass the `status` filter at `now` (all of them when it is None)."""
    if status is None:
        return records
    if status == "overdue":
        return [record for record in records if record.overdue(now)]
    return [record for record in records if record.status == status]


def erasure_counts(records: list[ErasureRecord], now: datetime) -> dict[str, int]:
    """How many of `records` have each status (an overdue one also counts as pending or failed)."""
    return {status: len(with_status(records, status, now)) for status in ERASURE_STATUSES}
