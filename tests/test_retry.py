"""The retry policy on its own: the RQ retry budget built from the schedule, and each delay."""

from __future__ import annotations

import random

import pytest

from crmsync.core.queue import retry_policy
from jobs.retry import next_delay


def test_the_retry_budget_is_one_retry_per_entry_of_the_schedule() -> None:
    policy = retry_policy((5, 60, 300))
    assert policy is not None
    assert (policy.max, policy.intervals) == (3, [5, 60, 300])


def test_an_empty_schedule_means_no_retries() -> None:
    assert retry_policy(()) is None


def test_without_a_schedule_a_retry_is_immediate_unless_the_api_asks_to_wait() -> None:
    assert next_delay((), 0) == 0
    assert next_delay((), 3, retry_after=4) == 4


@pytest.mark.parametrize("attempt", range(10))
def test_backoff_follows_the_schedule_within_the_jitter(attempt: int) -> None:
    schedule = (5, 60, 300, 1800)
    base = schedule[min(attempt, len(schedule) - 1)]
    delays = {next_delay(schedule, attempt, rng=random.Random(seed)) for seed in range(50)}
    assert all(0.8 * base - 1 <= delay <= 1.2 * base + 1 for delay in delays)
    assert len(delays) > 1  # jittered, not fixed


def test_retry_after_is_a_floor_never_shortened_by_jitter() -> None:
    assert all(next_delay((5,), 0, retry_after=90, rng=random.Random(seed)) >= 90 for seed in range(50))
