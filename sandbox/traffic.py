"""Observing the requests each GraphQL API receives, second by second, so a test can check a rate limit.

Counts are kept per wall-clock second (`time.time()` truncated), which is what "N requests per second"
means to a client limiting itself with fixed windows on the same machine. A stricter measure is kept
too: the most requests seen in any one-second sliding window, which a token bucket with a burst can
exceed even when every wall-clock second stays within the limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.faults import API_NAMES

# Per-second counts older than this are dropped (the maxima are kept), so a long-running sandbox
# does not grow without bound.
KEPT_SECONDS = 3600


@dataclass
class ApiTraffic:
    """One API's counts since the last reset."""

    total: int = 0
    max_per_second: int = 0
    max_in_sliding_second: int = 0
    per_second: dict[int, int] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=deque)

    def record(self, wall: float, monotonic: float) -> None:
        """Count one request received at `wall` (time.time()) and `monotonic` (time.monotonic())."""
        second = int(wall)
        count = self.per_second.get(second, 0) + 1
        self.per_second[second] = count
        self.total += 1
        self.max_per_second = max(self.max_per_second, count)
        self.recent.append(monotonic)
        while self.recent[0] <= monotonic - 1.0:
            self.recent.popleft()
        self.max_in_sliding_second = max(self.max_in_sliding_second, len(self.recent))
        # Seconds are recorded in (nearly) increasing order, so the oldest keys come first.
        while len(self.per_second) > KEPT_SECONDS:
            del self.per_second[next(iter(self.per_second))]

    def to_json(self) -> dict[str, Any]:
        """The counts as the admin API reports them."""
        return {
            "total": self.total,
            "max_per_second": self.max_per_second,
            "max_in_sliding_second": self.max_in_sliding_second,
            "per_second": {str(second): n for second, n in sorted(self.per_second.items())},
        }


class RequestRates:
    """Requests received per API: total, per wall-clock second, and the maxima since the last reset."""

    def __init__(self) -> None:
        # A condition, so a test can await a number of requests instead of sleeping.
        self._lock = threading.Condition(threading.Lock())
        self.reset()

    def reset(self) -> None:
        """Forget every count; the maxima start again from zero."""
        with self._lock:
            self._since = time.time()
            self._apis = {api: ApiTraffic() for api in API_NAMES}

    def record(self, api: str) -> None:
        """Count one request received by `api` (one of API_NAMES), whatever its answer will be."""
        with self._lock:
            self._apis[api].record(time.time(), time.monotonic())
            self._lock.notify_all()

    def wait_for_total(self, api: str, count: int, timeout: float) -> bool:
        """Block until `api` has received `count` requests since the reset; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._apis[api].total >= count, timeout)

    def to_json(self) -> dict[str, Any]:
        """The admin API's report: `since` (epoch seconds of the reset) and each API's counts."""
        with self._lock:
            return {"since": self._since, **{api: t.to_json() for api, t in self._apis.items()}}
