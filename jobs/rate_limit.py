"""One platform API's request rate, shared by every worker process and dyno through Redis.

Each request first takes a turn from a Redis script: requests are spaced at least `1 / limit`
seconds apart across all workers (GCRA without a burst allowance, the theoretical arrival time kept
in one key), and none is sent while the API's pause key exists. A 429 sets that pause key for the
API's Retry-After, so one throttled job holds back every worker's calls to that API, not only its
own retry.
"""

from __future__ import annotations

import time

from redis import Redis

from crmsync.core.errors import RateLimited
from crmsync.core.keys import API_TURN_TTL_MARGIN_MS, api_pause_key, api_turn_key

__all__ = ["RateLimit", "HEADROOM", "DEFAULT_PAUSE_SECONDS", "PAUSE_CHECK_SECONDS"]

# Turns are spaced for 90 % of the limit: a request reaches the API some milliseconds after its
# turn, and that delay varies (scheduling, the network), so exact spacing could still put one request
# more than the limit into one of the API's seconds. 10 % absorbs up to 100 ms of such variation.
HEADROOM = 0.9
# A 429 without a usable Retry-After pauses the API this long.
DEFAULT_PAUSE_SECONDS = 1.0
# Without a rate limit a request needs no turn, only the pause check: each process asks Redis at most
# this often, instead of adding a round trip to every request (a 429 seen by another worker holds
# this one back within 0.2 s; with a rate limit set, every turn checks the pause).
PAUSE_CHECK_SECONDS = 0.2

_TAKE_TURN = """
-- KEYS: the API's next free turn (µs since the epoch, Redis's clock), its pause key
-- ARGV: µs between turns (0: no rate limit, only the pause applies), ms the turn key outlives its turn
-- Returns 0 when the caller may send now (its turn is taken), else µs to wait before asking again.
redis.replicate_commands()
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then
  return paused * 1000
end
local interval = tonumber(ARGV[1])
if interval == 0 then
  return 0
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if free_at > now then
  return free_at - now
end
local ttl_ms = math.ceil(interval / 1000) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.0f', now + interval), 'PX', ttl_ms)
return 0
"""
_PAUSE = """
-- KEYS: the API's pause key; ARGV: ms. Never shortens a longer pause set by another worker.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""


class RateLimit:
    """The turns and pauses of one API (`name`), `per_second` requests at most (0: no limit)."""

    def __init__(self, redis: Redis, name: str, per_second: float, max_wait_seconds: float) -> None:
        self.name = name
        self._interval_us = round(1_000_000 / (per_second * HEADROOM)) if per_second > 0 else 0
        self._keys = [api_turn_key(name), api_pause_key(name)]
        self._max_wait = max_wait_seconds
        self._next_pause_check = 0.0
        self._take_turn = redis.register_script(_TAKE_TURN)
        self._pause = redis.register_script(_PAUSE)

    def wait_turn(self) -> None:
        """Block until this process may send one request; raise RateLimited if that takes longer
        than `max_wait_seconds` (the job is then retried later instead of holding its worker)."""
        if not self._interval_us and time.monotonic() < self._next_pause_check:
            return
        deadline = time.monotonic() + self._max_wait
        args = [self._interval_us, API_TURN_TTL_MARGIN_MS]
        while wait_us := int(self._take_turn(keys=self._keys, args=args)):
            wait = wait_us / 1_000_000
            if time.monotonic() + wait > deadline:
                raise RateLimited(f"{self.name} API paused or at its rate limit", retry_after=wait)
            time.sleep(wait)
        self._next_pause_check = time.monotonic() + PAUSE_CHECK_SECONDS

    def pause(self, seconds: float | None) -> None:
        """Hold every worker's calls to this API for `seconds` (a 429's Retry-After)."""
        pause_ms = max(1, round((seconds if seconds is not None else DEFAULT_PAUSE_SECONDS) * 1000))
        self._pause(keys=self._keys[1:], args=[pause_ms])
        self._next_pause_check = 0.0
