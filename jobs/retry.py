"""When a failed attempt is tried again: exponential schedule, jitter, and the API's Retry-After."""

from __future__ import annotations

import random

from rq.job import Retry

__all__ = ["retry_policy", "next_delay"]


def retry_policy(schedule: tuple[int, ...]) -> Retry | None:
    """The RQ retry budget for one event: one retry per entry of the schedule."""
    if not schedule:
        return None
    return Retry(max=len(schedule), interval=list(schedule))


def next_delay(
    schedule: tuple[int, ...],
    attempt: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> int:
    """Seconds to wait before retry number `attempt` (0-based).

    Full jitter within +-20% spreads a burst of failures so retries don't all land together; a
    Retry-After from the API is a floor, never shortened by jitter.
    """
    base = schedule[min(attempt, len(schedule) - 1)] if schedule else 0
    jittered = base * (rng or random).uniform(0.8, 1.2)
    return max(0, round(max(jittered, retry_after or 0)))
