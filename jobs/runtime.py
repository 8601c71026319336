"""The worker process's clients, attached in one place and reused by every job it runs."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from crmsync.settings import Settings, SettingsError

from .ordering import LOCK_MARGIN_SECONDS, CustomerLedgers
from .platform_api import PlatformApi

__all__ = ["Runtime", "install", "current"]


@dataclass
class Runtime:
    """Settings, Redis and one kept-alive session per platform API."""

    settings: Settings
    redis: Redis
    customers: PlatformApi
    personal_data: PlatformApi
    ledgers: CustomerLedgers

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> Runtime:
        if settings.customers_api is None or settings.personal_data_api is None:
            raise SettingsError("the worker needs CUSTOMERS_API_URL/TOKEN and PERSONAL_DATA_API_URL/TOKEN")
        timeout = settings.api_timeout_seconds
        return cls(
            settings=settings,
            redis=redis,
            customers=PlatformApi("customers", settings.customers_api, timeout),
            personal_data=PlatformApi("personal-data", settings.personal_data_api, timeout),
            ledgers=CustomerLedgers(
                redis,
                # Used outside a job; inside one the lock follows that job's own timeout.
                lock_ttl_seconds=settings.job_timeout_seconds + LOCK_MARGIN_SECONDS,
                ledger_ttl_seconds=settings.ledger_ttl_seconds,
                erased_ledger_ttl_seconds=settings.erasure_audit_retention_days * 86_400,
                wait_seconds=2.0,
                in_flight_hold_seconds=settings.in_flight_hold_seconds,
            ),
        )

    def close(self) -> None:
        self.customers.close()
        self.personal_data.close()


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make `runtime` the one jobs in this process use (called once at worker start)."""
    global _current
    _current = runtime


def current() -> Runtime:
    """The installed runtime; jobs run only inside a crmsync worker, which installs it."""
    if _current is None:
        raise RuntimeError("no crmsync runtime installed: run jobs with `crmsync worker`")
    return _current
