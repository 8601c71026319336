"""Settings of the sandbox, read from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.faults import FaultSettings, FaultSettingsError


class ConfigError(ValueError):
    """A required setting is missing or a setting is malformed; the message names the variable."""


@dataclass(frozen=True)
class SandboxConfig:
    """Tokens for the two APIs, an optional purchases file to seed from, the fault settings, and the
    latency in milliseconds every GraphQL call answers after (0: as fast as it can)."""

    customers_token: str
    personal_data_token: str
    purchases_file: Path | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)
    api_latency_ms: int = 0

    def __post_init__(self) -> None:
        # An empty token would let an empty Authorization header through.
        if not self.customers_token or not self.personal_data_token:
            raise ConfigError("Both API tokens must be non-empty.")
        if self.api_latency_ms < 0:
            raise ConfigError("SANDBOX_API_LATENCY_MS (--api-latency-ms) must not be negative.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxConfig:
        """Read the `SANDBOX_*` variables; raise ConfigError naming any required one that is unset."""
        env = os.environ if environ is None else environ
        purchases_file = env.get("SANDBOX_PURCHASES_FILE", "").strip()
        try:
            faults = FaultSettings.from_env(env)
        except FaultSettingsError as exc:
            raise ConfigError(str(exc)) from exc
        return cls(
            customers_token=_required(env, "SANDBOX_CUSTOMERS_TOKEN"),
            personal_data_token=_required(env, "SANDBOX_PERSONAL_DATA_TOKEN"),
            purchases_file=Path(purchases_file) if purchases_file else None,
            faults=faults,
            api_latency_ms=_whole_number(env, "SANDBOX_API_LATENCY_MS"),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    """Return a required variable's value, or raise ConfigError naming it."""
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} must be set to the Bearer token the sandbox accepts.")
    return value


def _whole_number(env: Mapping[str, str], name: str) -> int:
    """Return an optional whole-number variable (0 when unset), or raise ConfigError naming it."""
    raw = env.get(name, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of milliseconds.") from None
