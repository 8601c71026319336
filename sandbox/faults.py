"""Switchable fault injection for the sandbox's two GraphQL endpoints.

All faults are off by default. Each request draws once per fault kind from one random generator, in a
fixed order, so a configured seed reproduces the same sequence of faults. Besides these shares, three
deterministic faults let a test fail exactly what it means to: one purchase's erasures, one API's
requests with 429 for a time window or a number of requests, and the next customer mutations refused
with payload errors that echo the submitted values.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

FAULT_KINDS = ("unavailable", "throttle", "slow", "lost_response")
# Deterministic faults are counted too, but have no share to draw.
COUNTED_KINDS = (*FAULT_KINDS, "rejected")
API_NAMES = ("customers", "personal-data")
ENV_PREFIX = "SANDBOX_FAULT_"


class FaultSettingsError(ValueError):
    """A fault setting is missing its expected type or lies outside its allowed range."""


@dataclass(frozen=True)
class FaultSettings:
    """Shares (0..1) of GraphQL requests that get each fault, and the fault parameters."""

    unavailable_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after: int = 1
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    lost_response_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("unavailable_rate", "throttle_rate", "slow_rate", "lost_response_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise FaultSettingsError(f"{name} ({ENV_PREFIX}{name.upper()}) must be between 0 and 1.")
        if self.retry_after < 0 or self.slow_seconds < 0:
            raise FaultSettingsError("retry_after and slow_seconds must not be negative.")

    @classmethod
    def from_json(cls, data: Any) -> FaultSettings:
        """Build settings from a JSON object with the lower-case keys; missing keys keep their defaults."""
        if not isinstance(data, Mapping):
            raise FaultSettingsError("Fault settings must be a JSON object.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultSettingsError(f"Unknown fault settings: {', '.join(unknown)}.")
        return cls(**{name: _coerce(name, value) for name, value in data.items()})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FaultSettings:
        """Build settings from the `SANDBOX_FAULT_*` variables; unset ones keep their defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper(), "").strip()
            if raw:
                values[f.name] = _parse_env(ENV_PREFIX + f.name.upper(), f.name, raw)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """Return the settings as a JSON object with the same keys `from_json` accepts."""
        return asdict(self)


def _coerce(name: str, value: Any) -> Any:
    """Check one JSON value against the type of the setting it is for."""
    # bool is an int subclass; `true` as a rate is a mistake, not 1.0.
    if name == "seed":
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise FaultSettingsError("seed must be an integer or null.")
    if name == "retry_after":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise FaultSettingsError("retry_after must be an integer number of seconds.")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise FaultSettingsError(f"{name} must be a number.")


def _parse_env(variable: str, name: str, raw: str) -> Any:
    """Parse one environment variable, naming it in the error when it is malformed."""
    try:
        return int(raw) if name in ("seed", "retry_after") else float(raw)
    except ValueError:
        raise FaultSettingsError(f"{variable} must be a number, not a malformed value.") from None


@dataclass
class ThrottleWindow:
    """429 for one API until a deadline (`time.monotonic()`) or for a number of requests, whichever is set."""

    until: float | None = None
    requests_left: int | None = None
    retry_after: int | None = None

    def take(self, now: float, default_retry_after: int) -> int | None:
        """Count one request against the window; the Retry-After to answer with, or None once it is over."""
        if self.until is not None:
            if now >= self.until:
                return None
            # Without an explicit value, tell the client when the window ends, as a real limiter would.
            return self.retry_after if self.retry_after is not None else max(1, math.ceil(self.until - now))
        if not self.requests_left:
            return None
        self.requests_left -= 1
        return self.retry_after if self.retry_after is not None else default_retry_after


@dataclass(frozen=True)
class FaultDraw:
    """The faults chosen for one request; `lose_response` applies only if the request is a mutation."""

    unavailable: bool = False
    throttle: bool = False
    slow: bool = False
    lose_response: bool = False


class FaultInjector:
    """Draws faults for requests, counts the ones injected, and performs interruptible slow-downs.

    It also holds the latency every API call answers after (`--api-latency-ms`), which is no fault:
    `configure` leaves it alone, so switching faults off keeps a realistic API's response time.
    """

    def __init__(self, settings: FaultSettings | None = None, latency_ms: int = 0) -> None:
        self._lock = threading.Lock()
        # Set on shutdown so slow requests stop sleeping instead of outliving the server.
        self._released = threading.Event()
        self.latency_ms = latency_ms
        self.configure(settings or FaultSettings())

    @property
    def settings(self) -> FaultSettings:
        """The settings in force."""
        return self._settings

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings, restarting the random sequence from the configured seed."""
        with self._lock:
            self._settings = settings
            self._random = random.Random(settings.seed)
            self._counts = dict.fromkeys(COUNTED_KINDS, 0)
            self._failing_purchases: dict[int, int] = {}
            self._throttled: dict[str, ThrottleWindow] = {}
            self._rejections_left = 0

    def reset_counts(self) -> None:
        """Zero the injected-fault counters, keeping the settings and the deterministic faults."""
        with self._lock:
            self._counts = dict.fromkeys(COUNTED_KINDS, 0)

    def draw(self) -> FaultDraw:
        """Choose the faults for one request."""
        with self._lock:
            s, roll = self._settings, self._random.random
            # Always draw all four so one seed gives the same sequence whatever the rates are.
            rolls = [roll() for _ in FAULT_KINDS]
            return FaultDraw(
                unavailable=rolls[0] < s.unavailable_rate,
                throttle=rolls[1] < s.throttle_rate,
                slow=rolls[2] < s.slow_rate,
                lose_response=rolls[3] < s.lost_response_rate,
            )

    def fail_purchase(self, purchase_id: int, times: int) -> None:
        """Answer the next `times` deletePersonalCustomerData calls for `purchase_id` with 503.

        Deterministic, unlike the shares above: lets a test fail exactly one step of an erasure.
        """
        with self._lock:
            self._failing_purchases[purchase_id] = times

    def take_purchase_failure(self, variables: Mapping[str, Any] | None) -> bool:
        """Whether this personal-data request (by its `purchaseId` variable) is one to fail; counts down."""
        purchase_id = (variables or {}).get("purchaseId")
        if not isinstance(purchase_id, int):
            return False
        with self._lock:
            left = self._failing_purchases.get(purchase_id, 0)
            if left:
                self._failing_purchases[purchase_id] = left - 1
            return left > 0

    def throttle(self, api: str, window: ThrottleWindow) -> None:
        """Answer `api`'s requests (one of API_NAMES) with 429 while `window` lasts; replaces any window."""
        with self._lock:
            self._throttled[api] = window

    def end_throttle(self, api: str) -> None:
        """End `api`'s 429 window, if any."""
        with self._lock:
            self._throttled.pop(api, None)

    def take_throttle(self, api: str) -> int | None:
        """The Retry-After seconds if this request to `api` falls in its 429 window, else None."""
        with self._lock:
            window = self._throttled.get(api)
            if window is None:
                return None
            retry_after = window.take(time.monotonic(), self._settings.retry_after)
            if retry_after is None:
                del self._throttled[api]
            return retry_after

    def reject_mutations(self, times: int) -> None:
        """Refuse the next `times` customer mutations with payload errors echoing the submitted values."""
        with self._lock:
            self._rejections_left = times

    def take_rejection(self) -> bool:
        """Whether this customer mutation is one to refuse; counts down and counts the fault."""
        with self._lock:
            if self._rejections_left <= 0:
                return False
            self._rejections_left -= 1
            self._counts["rejected"] += 1
            return True

    def record(self, kind: str) -> None:
        """Count one injected fault of `kind` (one of COUNTED_KINDS)."""
        with self._lock:
            self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        """Return how many faults of each kind were injected since the last configure."""
        with self._lock:
            return dict(self._counts)

    def pause(self) -> None:
        """Sleep for the configured slow-down, returning early when the sandbox shuts down."""
        self._released.wait(self._settings.slow_seconds)

    def delay(self) -> None:
        """Wait the API latency; each request waits in its own server thread, so none blocks another."""
        if self.latency_ms > 0:
            self._released.wait(self.latency_ms / 1000)

    def release(self) -> None:
        """Wake every sleeping slow request; used when the server stops."""
        self._released.set()
