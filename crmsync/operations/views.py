"""What operators see of failed and replayed jobs: identifiers, failure classes and redacted messages,
never a job's arguments (they hold the customer's personal data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

__all__ = ["FailedJob", "FailedPage", "ActionResult", "ReplayedJob"]


@dataclass(frozen=True)
class FailedJob:
    """What an operator may see of a failed job: identifiers and why it failed."""

    job_id: str
    webhook_id: str
    type: str
    external_id: str
    failure_class: str
    message: str
    attempts: int
    replays: int
    first_failed_at: datetime | None
    last_failed_at: datetime | None
    # The webhook ids of the other events its last failed write carried (jobs/coalescing.py).
    coalesced: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["coalesced"] = list(self.coalesced)
        for name in ("first_failed_at", "last_failed_at"):
            data[name] = data[name].isoformat(timespec="seconds") if data[name] else None
        return data


@dataclass(frozen=True)
class FailedPage:
    """One page of failed jobs, newest failure first."""

    items: list[FailedJob]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class ActionResult:
    """What a replay or discard did to one job: replayed, discarded, not_failed or missing."""

    job_id: str
    status: str


@dataclass(frozen=True)
class ReplayedJob:
    """A replayed job and where it is now; its outcome once it has run (applied, stale, noop)."""

    job_id: str
    type: str
    external_id: str
    replayed_at: datetime
    replays: int
    status: str
    outcome: str | None = None
    failure_class: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "replayed_at": self.replayed_at.isoformat(timespec="seconds")}
