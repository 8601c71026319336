"""When a failed attempt is tried again: exponential schedule, jitter, and the API's Retry-After.

The retry budget itself is set when the job is built (crmsync.core.queue.retry_policy)."""

from __future__ import annotations

import random

__all__ = ["next_delay"]


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
