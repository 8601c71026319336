"""Which failed jobs an operator means: a filter by type, failure class, customer and time, with times
given as a moment or a time ago (`2h`), as the CLI and the dashboard both read them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .views import FailedJob

__all__ = ["parse_moment", "FailureFilter"]


def parse_moment(value: str, now: datetime | None = None) -> datetime:
    """`2026-11-22T10:00:00Z` (no offset means UTC), or a time ago: `30m`, `2h`, `7d`."""
    now = now or datetime.now(UTC)
    ago = re.fullmatch(r"\s*([0-9]+)\s*([mhd])\s*", value)
    try:
        if ago:
            unit = {"m": "minutes", "h": "hours", "d": "days"}[ago.group(2)]
            return now - timedelta(**{unit: int(ago.group(1))})
    except OverflowError:
        # `999999999d` ago is before year 1: no datetime holds it.
        raise ValueError(f"{value!r} reaches past the year 1") from None
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FailureFilter:
    """Which failed jobs to show or replay; empty fields match everything."""

    type: str | None = None
    failure_class: str | None = None
    external_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, job: FailedJob) -> bool:
        last = job.last_failed_at
        return (
            (not self.type or job.type == self.type)
            and (not self.failure_class or job.failure_class == self.failure_class)
            and (not self.external_id or job.external_id == self.external_id)
            and (self.since is None or (last is not None and last >= self.since))
            and (self.until is None or (last is not None and last <= self.until))
        )
