"""The worker's clients, attached in one place (the worker object) and reused by every job it runs.

The worker owns its Runtime (`SyncWorker.runtime`) and hands it to each job it performs for the
duration of that job (`for_current_job`): a job function receives plain JSON only (RQ calls it with
the payload), so this is how `apply_event` reaches the worker's clients. Nothing is installed at
import or build time, and two workers in one process (tests) each keep their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from redis import Redis

from crmsync.core.settings import ApiSettings, Settings, SettingsError

from .coalescing import QueuedEvents
from .id_cache import IdCache
from .merge_barrier import MergeBarrier
from .ordering import LOCK_MARGIN_SECONDS, CustomerLedgers
from .platform_api import PlatformApi
from .rate_limit import RateLimit

__all__ = ["Runtime", "performing", "for_current_job"]


@dataclass
class Runtime:
    """Settings, Redis, one kept-alive session per platform API, and the ledgers and caches in Redis."""

    settings: Settings
    redis: Redis
    customers: PlatformApi
    personal_data: PlatformApi
    ledgers: CustomerLedgers
    ids: IdCache
    # None when COALESCE_EVENTS is off: each event is applied on its own.
    queued: QueuedEvents | None
    merges: MergeBarrier

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> Runtime:
        if settings.customers_api is None or settings.personal_data_api is None:
            raise SettingsError("the worker needs CUSTOMERS_API_URL/TOKEN and PERSONAL_DATA_API_URL/TOKEN")
        timeout = settings.api_timeout_seconds
        # A job waits this long at most for its turn or for a pause to end; then it is retried later.
        max_wait = settings.job_timeout_seconds / 2

        def api(name: str, api_settings: ApiSettings) -> PlatformApi:
            turns = RateLimit(redis, name, api_settings.rate_limit, max_wait)
            return PlatformApi(name, api_settings, timeout, turns)

        return cls(
            settings=settings,
            redis=redis,
            customers=api("customers", settings.customers_api),
            personal_data=api("personal-data", settings.personal_data_api),
            ledgers=CustomerLedgers(
                redis,
                # Used outside a job; inside one the lock follows that job's own timeout.
                lock_ttl_seconds=settings.job_timeout_seconds + LOCK_MARGIN_SECONDS,
                ledger_ttl_seconds=settings.ledger_ttl_seconds,
                erased_ledger_ttl_seconds=settings.erasure_audit_retention_days * 86_400,
                wait_seconds=2.0,
                in_flight_hold_seconds=settings.in_flight_hold_seconds,
            ),
            ids=IdCache(redis, enabled=settings.id_cache),
            queued=QueuedEvents(redis) if settings.coalesce_events else None,
            merges=MergeBarrier(redis, settings.queue_name),
        )

    def close(self) -> None:
        self.customers.close()
        self.personal_data.close()


# The runtime of the worker performing the job on this thread, set only while it performs one.
_performing: ContextVar[Runtime] = ContextVar("crmsync_worker_runtime")


@contextmanager
def performing(runtime: Runtime) -> Iterator[None]:
    """Make `runtime` the current job's for the duration of one job (the worker calls this)."""
    token = _performing.set(runtime)
    try:
        yield
    finally:
        _performing.reset(token)


def for_current_job() -> Runtime:
    """The runtime of the worker performing the current job; jobs run only inside a crmsync worker."""
    try:
        return _performing.get()
    except LookupError:
        raise RuntimeError("no crmsync worker is performing a job: run jobs with `crmsync worker`") from None
