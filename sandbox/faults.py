"""Switchable fault injection for the sandbox's two GraphQL endpoints.

All faults are off by default. Each request draws once per fault kind from one random generator, in a
fixed order, so a configured seed reproduces the same sequence of faults.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

FAULT_KINDS = ("unavailable", "throttle", "slow", "lost_response")
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


@dataclass(frozen=True)
class FaultDraw:
    """The faults chosen for one request; `lose_response` applies only if the request is a mutation."""

    unavailable: bool = False
    throttle: bool = False
    slow: bool = False
    lose_response: bool = False


class FaultInjector:
    """Draws faults for requests, counts the ones injected, and performs interruptible slow-downs."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        # Set on shutdown so slow requests stop sleeping instead of outliving the server.
        self._released = threading.Event()
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
            self._counts = dict.fromkeys(FAULT_KINDS, 0)
            self._failing_purchases: dict[int, int] = {}

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

    def record(self, kind: str) -> None:
        """Count one injected fault of `kind` (one of FAULT_KINDS)."""
        with self._lock:
            self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        """Return how many faults of each kind were injected since the last configure."""
        with self._lock:
            return dict(self._counts)

    def pause(self) -> None:
        """Sleep for the configured slow-down, returning early when the sandbox shuts down."""
        self._released.wait(self._settings.slow_seconds)

    def release(self) -> None:
        """Wake every sleeping slow request; used when the server stops."""
        self._released.set()
